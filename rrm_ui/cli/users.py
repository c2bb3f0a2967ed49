"""``rrm-ui users``: annotator accounts. The app asks for a login once any account has a password."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TYPE_CHECKING

from rrm_ui.config import Settings

if TYPE_CHECKING:
    from rrm_ui.storage import Repository

DB_HELP = "database URL (default: RRM_UI_DATABASE_URL, else sqlite:///db/rrm_ui.db)"


def add_parser(sub: argparse._SubParsersAction) -> None:
    users = sub.add_parser("users", help="annotator accounts (login)")
    users_sub = users.add_subparsers(dest="users_command", required=True)
    add = users_sub.add_parser("add", help="add an account, or give a password to an imported annotator")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="an admin: sees every label, manages jobs")
    add.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    add.add_argument("--db", help=DB_HELP)
    add.set_defaults(handler=add_command)
    ls = users_sub.add_parser("list", help="list annotators: name, role, whether they have a password")
    ls.add_argument("--db", help=DB_HELP)
    ls.set_defaults(handler=list_command)


def _repo(args: argparse.Namespace) -> Repository:
    from rrm_ui.services import open_repository

    return open_repository(Settings.from_env().but(database_url=args.db))


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("password again: ") != first:
        raise ValueError("the two passwords differ")
    return first


def add_command(args: argparse.Namespace) -> int:
    from rrm_ui.domain import Role
    from rrm_ui.services.accounts import add_user, check_name, check_password, has_accounts

    try:
        check_name(args.name)  # refuse a bad name before asking for a password
        password = _read_password(args.password_stdin)
        check_password(password)
        repo = _repo(args)
        first = not has_accounts(repo)
        acct = add_user(repo, args.name, password, Role.ADMIN if args.admin else Role.ANNOTATOR)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"added {acct.role.value} {acct.name!r}")
    if first:
        print("this is the first account: the app asks for a login from its next start")
    return 0


def list_command(args: argparse.Namespace) -> int:
    from rrm_ui.services.accounts import list_users

    users = list_users(_repo(args))
    if not users:
        print("no annotators yet; add an account with `rrm-ui users add NAME`")
        return 0
    width = max(len("name"), *(len(u.name) for u in users))
    print(f"{'name':{width}}  {'role':9}  password")
    for u in users:
        print(f"{u.name:{width}}  {u.role.value:9}  {'yes' if u.has_password else 'no'}")
    return 0
