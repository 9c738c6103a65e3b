"""Who may see what. Every read of personal or aggregate data goes through these checks.

- a member sees only their own record;
- a secretary sees aggregates of their own organisation's subtree (never a sibling's);
- an admin sees everything.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.core.errors import NotAllowed
from bot.storage.models import Member, Organization, Role


@dataclass(frozen=True)
class Viewer:
    member: Member
    org: Organization

    @property
    def role(self) -> Role:
        return Role(self.member.role)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.admin

    @property
    def can_report(self) -> bool:
        return self.role in (Role.secretary, Role.admin)


def check_member_record(viewer: Viewer, member: Member) -> None:
    # Only the member themself; not even a secretary reads an individual's record in chat.
    if viewer.member.id != member.id and not viewer.is_admin:
        raise NotAllowed("抱歉，个人答题记录只有本人可以查看。")


def check_org_report(viewer: Viewer, target: Organization) -> None:
    if viewer.is_admin:
        return
    if viewer.role is not Role.secretary:
        raise NotAllowed("抱歉，统计报告仅向支部书记及上级党组织开放。您可以发送 /me 查看个人学习记录。")
    if not target.path.startswith(viewer.org.path):
        raise NotAllowed("抱歉，您只能查看本组织及下级组织的统计。")
