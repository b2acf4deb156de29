// The echo plugin, in Node.js: `!node_echo hello` answers "hello".
//
// rosey.toml:
//   [plugins.node_echo]
//   path = "bot/rosey/plugins/examples/node_echo/index.js"
//   command = ["node"]
//
// Install its one dependency first: `npm ci --omit=dev` in this directory.
"use strict";

const { runPlugin } = require("./rosey");

runPlugin({
  async handleCommand(event) {
    const args = Array.isArray(event.data.args) ? event.data.args : [];
    if (args.length === 0) {
      throw new Error("usage: !node_echo TEXT");
    }
    return { message: args.join(" "), runtime: `node ${process.version}` };
  },
});
