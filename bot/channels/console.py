"""Console channel: a terminal chat through the same adapter boundary as the real platforms."""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from sqlmodel import select

from bot.channels.base import Recipient, SendOutcome, SendStatus
from bot.channels.text import render_all
from bot.core.parsing import parse_text
from bot.core.results import Result
from bot.core.service import Sender, Service
from bot.storage.models import ChannelIdentity, Member

PLATFORM = "console"


class ConsoleMessenger:
    """Outbound side: prints pushes, so `qingfeng push` works without any chat account."""

    platform = PLATFORM

    def __init__(self, service: Service, out: TextIO = sys.stdout) -> None:
        self.service = service
        self.out = out

    async def send(self, recipient: Recipient, results: list[Result]) -> SendOutcome:
        for text in render_all(results, self.service.settings.tz):
            print(f"[→ {recipient.external_id}]\n{text}\n", file=self.out)
        return SendOutcome(SendStatus.sent)


async def console_sender(service: Service, member: Member) -> Sender:
    """The console speaks as a roster member chosen by the operator; bind it on first use."""
    external_id = f"member-{member.id}"
    async with service.db.session() as session:
        found = (await session.exec(select(ChannelIdentity).where(
            ChannelIdentity.platform == PLATFORM, ChannelIdentity.external_id == external_id))).first()
        if found is None:
            session.add(ChannelIdentity(member_id=member.id, platform=PLATFORM,  # type: ignore[arg-type]
                                        external_id=external_id))
            await session.commit()
    return Sender(PLATFORM, external_id)


async def reply(service: Service, sender: Sender, line: str) -> list[str]:
    results = await service.for_channel(PLATFORM).handle(sender, parse_text(line))
    return render_all(results, service.settings.tz)


async def chat_loop(service: Service, sender: Sender, *, stdin: TextIO = sys.stdin,
                    stdout: TextIO = sys.stdout, prompt: str = "你> ") -> None:
    loop = asyncio.get_running_loop()
    print("清风 控制台 — 输入 /help 查看命令，/quit 退出。", file=stdout)
    while True:
        print(prompt, end="", file=stdout, flush=True)
        line = await loop.run_in_executor(None, stdin.readline)
        if not line:
            print(file=stdout)
            return
        line = line.strip()
        if line in ("/quit", "/exit", "退出"):
            return
        if not line:
            continue
        for text in await reply(service, sender, line):
            print(f"清风> {text}\n", file=stdout)
