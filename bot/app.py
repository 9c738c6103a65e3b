"""Process start-up shared by every CLI command: settings → migrations → database → bank."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.config import Settings
from bot.core.bank_sync import SyncReport, sync_bank
from bot.core.service import Clock, Service, system_clock
from bot.storage import migrate
from bot.storage.db import Database
from question_bank import Bank, open_bank

log = logging.getLogger(__name__)


@dataclass
class App:
    settings: Settings
    db: Database
    bank: Bank
    service: Service
    sync: SyncReport


async def start_app(settings: Settings, *, clock: Clock = system_clock, upgrade: bool = True) -> App:
    """Migrate (unless told not to), load and sync the bank, and build the core service.

    Migrations run in a worker thread, so this is safe inside a running event loop.
    """
    if upgrade:
        migrate.upgrade(settings.database_url)
    bank = open_bank(settings.bank_path)  # parsed when the sync finds it changed, or on first use
    db = Database(settings.database_url, echo=settings.sql_echo)
    async with db.session() as session:
        report = await sync_bank(session, bank)
    log.info("bank synced: %d items, %d cases, %d retired", report.items, report.cases, report.retired)
    service = Service(db, settings, clock=clock, topic_names=bank.vocabulary.topics)
    return App(settings=settings, db=db, bank=bank, service=service, sync=report)
