"""Platform-free inbound commands. Adapters build these; `Service.handle` executes them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bind:
    code: str


@dataclass(frozen=True)
class ShowQuiz:
    """The next item to answer; with `all_pending`, every unanswered item of the open rounds
    (channels with per-item buttons show them all at once)."""

    all_pending: bool = False


@dataclass(frozen=True)
class SubmitAnswer:
    """An answer. With round/item given (buttons) it is checked against deliveries;
    without (typed text), it answers the member's current item."""

    choice: str
    round_id: int | None = None
    item_id: str | None = None


@dataclass(frozen=True)
class ShowMe:
    pass


@dataclass(frozen=True)
class ShowReport:
    args: str = ""


@dataclass(frozen=True)
class ShowCase:
    pass


@dataclass(frozen=True)
class Help:
    pass


@dataclass(frozen=True)
class Unknown:
    text: str


Command = Bind | ShowQuiz | SubmitAnswer | ShowMe | ShowReport | ShowCase | Help | Unknown
