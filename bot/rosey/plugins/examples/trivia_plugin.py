"""Trivia: questions from a bundled file, scores kept in plugin storage.

Usage (in any channel; each channel has its own question)::

    !trivia start        ask a question (it stays open for 2 minutes)
    !trivia a paris      answer it (also: !trivia answer paris)
    !trivia skip         give up: show the answer
    !trivia top          the ten best players
    !trivia score        your own points

Why ``!trivia a paris`` and not ``!a paris``: a command word is a plugin's name, and a plugin
called ``a`` would be a second process with storage of its own, unable to see this plugin's
question or scores (each plugin can only read its own storage). One plugin, one word.

What it shows plugin authors:

* data files next to the plugin (``trivia_questions.json``): a plugin may read its own
  directory, nothing else, so ship data beside the code and find it with ``__file__``;
* ``self.storage`` for state that must survive a restart: the open question of each channel
  (with a ``ttl``, so a forgotten question expires by itself) and every player's score;
* ``self.storage.update()`` for what several people do at once: the first right answer wins the
  question and the point exactly once, however many answer at the same moment;
* storage keys built from user and channel names, which may hold any character: see
  :func:`key_part`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import unicodedata
import uuid
from pathlib import Path
from typing import Any

from bot.rosey.core.events import Event
from bot.rosey.errors import StorageError
from bot.rosey.plugins.permissions import Requests, Storage
from bot.rosey.plugins.plugin_interface import Command, PluginInterface, run_plugin

QUESTIONS_FILE = Path(__file__).with_name("trivia_questions.json")
ROUND_SECONDS = 120  # an unanswered question expires (storage TTL) after this long
TOP = 10

USAGE = (
    "usage: !trivia start | !trivia a <answer> | !trivia skip | !trivia top | !trivia score "
    "(answer with '!trivia a', e.g. !trivia a paris)"
)


def key_part(text: str) -> str:
    """``text`` made safe for a storage key (letters, digits, ``- _ = / :``, dots between).

    User ids and channels can hold anything (``#rosey``, ``@ann:matrix.org``): plain names are
    kept as they are (readable in ``rosey storage trivia list``), anything else is base64url
    encoded, and very long ones hashed, so two different names never share a key.
    """
    if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", text):
        return text
    encoded = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
    if len(encoded) > 100:
        return "h:" + hashlib.sha256(text.encode()).hexdigest()
    return "b:" + encoded


def normalize(answer: str) -> str:
    """Compare answers loosely: case, accents, punctuation and a leading article do not matter."""
    text = unicodedata.normalize("NFKD", answer.casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = re.sub(r"[^\w\s]", "", text)
    text = re.sub(r"^(the|a|an)\s+", "", text.strip())
    return " ".join(text.split())


def who(event: Event) -> tuple[str, str]:
    """(a stable id for the sender, the name to show). ``user`` is a dict from chat and a plain
    string from ``rosey send``; the platform is part of the id (ann on IRC is not ann on Matrix)."""
    user = event.data.get("user")
    if isinstance(user, dict):
        user_id = str(user.get("id") or user.get("username") or user.get("name") or "someone")
        name = str(user.get("name") or user.get("username") or user_id)
    else:
        user_id = name = str(user or "someone")
    platform = event.data.get("platform")
    return (f"{platform}/{user_id}" if platform else user_id), name


def load_questions(path: Path = QUESTIONS_FILE) -> list[dict[str, Any]]:
    """The question file: a list of ``{"q": question, "a": [accepted answers]}``."""
    questions = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(questions, list) or not questions:
        raise ValueError(f"{path.name}: expected a non-empty list of questions")
    for number, item in enumerate(questions):
        if not (isinstance(item, dict) and isinstance(item.get("q"), str) and item.get("a")):
            raise ValueError(f"{path.name}: question {number} needs 'q' (text) and 'a' (list of answers)")
    return questions


class TriviaPlugin(PluginInterface):
    """``!trivia``: a quiz with persistent scores."""

    plugin_name = "trivia"
    # The SDK checks these before handle_command runs: "!trivia a" without a guess is answered
    # with the usage line, and !help lists them.
    commands = (
        Command("start", help="Ask a new question in this channel"),
        Command("answer", usage="<guess...>", help="Answer the open question", aliases=("a",)),
        Command("skip", help="Give up on the open question and show its answer"),
        Command("top", help="The best players"),
        Command("score", help="Your own score"),
    )
    # Scores and open questions; the default storage quota is plenty (`rosey plugins review trivia`).
    requests = Requests(storage=Storage(max_bytes=2_000_000, max_keys=10_000))

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.questions: list[dict[str, Any]] = []

    async def on_start(self) -> None:
        # A broken file fails the start, with the reason in `rosey status` / the harness error.
        self.questions = load_questions()

    async def handle_command(self, event: Event) -> None:
        args = event.data.get("args") or []
        sub = args[0].lower() if args else "help"
        rest = " ".join(args[1:])
        handlers = {
            "start": self.start,
            "a": self.answer,
            "answer": self.answer,
            "skip": self.skip,
            "top": self.top,
            "score": self.score,
        }
        handler = handlers.get(sub)
        if handler is None:
            text = USAGE if sub in ("help", "-h", "--help") else f"unknown subcommand '{sub}'; {USAGE}"
            await self.publish_result({"message": text}, event.correlation_id)
            return
        try:
            text = await handler(event, rest)
        except UserError as exc:
            await self.publish_error(str(exc), event.correlation_id)
            return
        except StorageError as exc:  # the store is full or unreachable: say so, plainly
            await self.publish_error(
                f"trivia cannot reach its storage right now ({exc})", event.correlation_id
            )
            return
        await self.publish_result({"message": text}, event.correlation_id)

    # ------------------------------------------------------------------ subcommands

    def _round_key(self, event: Event) -> str:
        where = f"{event.data.get('platform') or ''}/{event.data.get('channel') or ''}"
        return f"round.{key_part(where)}"

    async def start(self, event: Event, _: str) -> str:
        index = random.randrange(len(self.questions))
        fresh = {"id": uuid.uuid4().hex, "index": index}
        # Atomic: if two people start at once, both get the same (first) question.
        current = await self.storage.update(
            self._round_key(event), lambda round_: round_ or fresh, ttl=ROUND_SECONDS
        )
        if current["index"] >= len(self.questions):  # asked from a longer file: ask anew
            current = fresh
            await self.storage.put(self._round_key(event), fresh, ttl=ROUND_SECONDS)
        question = self.questions[current["index"]]["q"]
        if current["id"] != fresh["id"]:
            return f"❓ A question is already open: {question}  (answer with !trivia a <answer>)"
        return f"❓ {question}  (answer with !trivia a <answer>; {ROUND_SECONDS // 60} minutes)"

    async def answer(self, event: Event, guess: str) -> str:
        if not guess:
            raise UserError("answer with !trivia a <answer>, e.g. !trivia a paris")
        key = self._round_key(event)
        current = await self.storage.get(key)
        if not current or current.get("winner") or current["index"] >= len(self.questions):
            # (the last case: the question file got shorter since the question was asked)
            raise UserError("no question is open here; ask for one with !trivia start")
        question = self.questions[current["index"]]
        if normalize(guess) not in {normalize(a) for a in question["a"]}:
            return f"❌ '{guess}' is not it. Keep trying!"
        user_id, name = who(event)

        def claim(round_: Any) -> Any:
            # Pure (no side effects): update() may run it again if someone else wrote meanwhile.
            if round_ and round_["id"] == current["id"] and not round_.get("winner"):
                return {**round_, "winner": user_id}
            return round_

        after = await self.storage.update(key, claim, ttl=ROUND_SECONDS)
        if not after or after.get("winner") != user_id:
            return f"⌛ Right, but someone was faster: the answer was {question['a'][0]}."
        points = await self.storage.update(
            f"score.{key_part(user_id)}",
            lambda score: {"name": name, "points": (score or {}).get("points", 0) + 1},
        )
        await self.storage.delete(key)
        return f"✅ {name} got it: {question['a'][0]}! {name} has {points['points']} point(s)."

    async def skip(self, event: Event, _: str) -> str:
        key = self._round_key(event)
        current = await self.storage.get(key)
        if not current or current["index"] >= len(self.questions):
            raise UserError("no question is open here; ask for one with !trivia start")
        await self.storage.delete(key)
        return f"⏭ The answer was: {self.questions[current['index']]['a'][0]}"

    async def top(self, event: Event, _: str) -> str:
        scores = [await self.storage.get(key) for key in await self.storage.keys("score.")]
        ranked = sorted((s for s in scores if s), key=lambda s: (-s["points"], s["name"]))[:TOP]
        if not ranked:
            return "🏆 No scores yet: !trivia start"
        return "🏆 " + ", ".join(f"{n}. {s['name']} ({s['points']})" for n, s in enumerate(ranked, 1))

    async def score(self, event: Event, _: str) -> str:
        user_id, name = who(event)
        score = await self.storage.get(f"score.{key_part(user_id)}", default={"points": 0})
        return f"{name}: {score['points']} point(s)"


class UserError(Exception):
    """Something the user can fix; the text is the answer in chat."""


if __name__ == "__main__":
    run_plugin(TriviaPlugin)
