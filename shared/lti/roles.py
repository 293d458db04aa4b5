"""The role kinds Attune authorises with, from an LTI ``roles`` claim (or an NRPS member's
roles): context roles only.

A context role (LTI 1.3 Core §A.2.2, ``…/lis/v2/membership#…``) is what a person is in this
course. Institution and system roles (``…/institution/person#Administrator``,
``…/system/person#SysAdmin``, ``…#Faculty``) say what they are elsewhere in the school: a staff
member enrolled in a course as a learner is a learner there, and must not read classmates'
identified answers. Roles match exactly, never by suffix.

| kind | role |
|---|---|
| instructor | ``membership#Instructor`` |
| ta | ``membership/Instructor#TeachingAssistant`` (Canvas sends ``membership#Instructor`` too) |
| admin | ``membership#Administrator`` (the course's administrator, not the school's) |
| learner | ``membership#Learner`` |
| mentor | ``membership#Mentor`` |

Teachers are instructor, ta and admin (``TEACHER_KINDS``, ``LaunchIdentity.is_teacher``). Other
context roles (``ContentDeveloper``, a Canvas designer; ``Member``; ``Manager``) get no kind.
"""

from __future__ import annotations

from collections.abc import Iterable

MEMBERSHIP = "http://purl.imsglobal.org/vocab/lis/v2/membership"

KINDS: dict[str, str] = {
    f"{MEMBERSHIP}#Instructor": "instructor",
    f"{MEMBERSHIP}/Instructor#TeachingAssistant": "ta",
    f"{MEMBERSHIP}#Administrator": "admin",
    f"{MEMBERSHIP}#Learner": "learner",
    f"{MEMBERSHIP}#Mentor": "mentor",
}
TEACHER_KINDS = frozenset({"instructor", "ta", "admin"})


def role_kinds(roles: Iterable[str]) -> list[str]:
    """The kinds of these roles, each once, in the order the roles name them."""
    kinds: list[str] = []
    for role in roles:
        kind = KINDS.get(role)
        if kind is not None and kind not in kinds:
            kinds.append(kind)
    return kinds
