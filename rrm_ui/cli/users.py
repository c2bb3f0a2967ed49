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
    role = add.add_mutually_exclusive_group()
    role.add_argument("--admin", action="store_true", help="an admin: sees every label, manages jobs, adjudicates")
    role.add_argument(
        "--reviewer",
        action="store_true",
        help="a reviewer: sees every label and adjudicates disagreements (the Review tab)",
    )
    add.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    add.add_argument("--db", help=DB_HELP)
    add.set_defaults(handler=add_command)
    ls = users_sub.add_parser("list", help="list annotators: name, role, whether they have a password")
    ls.add_argument("--db", help=DB_HELP)
    ls.set_defaults(handler=list_command)
    rm = users_sub.add_parser("remove", help="end an account's login and its open sessions (its labels stay)")
    rm.add_argument("name")
    rm.add_argument("--db", help=DB_HELP)
    rm.set_defaults(handler=remove_command)
    reset = users_sub.add_parser("reset-password", help="give an account a new password and end its open sessions")
    reset.add_argument("name")
    reset.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    reset.add_argument("--db", help=DB_HELP)
    reset.set_defaults(handler=reset_command)


def _repo(args: argparse.Namespace) -> Repository:
    from rrm_ui.services import open_repository

    return open_repository(Settings.from_env().but(database_url=args.db))


STDIN_HINT = "give it on stdin instead: printf '%s\\n' \"$PASSWORD\" | rrm-ui users add NAME --password-stdin"


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise ValueError(f"--password-stdin: stdin is empty, no password was given; {STDIN_HINT}")
        return line.rstrip("\r\n")
    try:  # without a terminal getpass reads stdin, which may be empty or closed
        first = getpass.getpass("password: ")
        again = getpass.getpass("password again: ")
    except EOFError:
        raise ValueError(f"no terminal to ask for the password (and nothing on stdin); {STDIN_HINT}") from None
    if again != first:
        raise ValueError("the two passwords differ")
    return first


def add_command(args: argparse.Namespace) -> int:
    from rrm_ui.domain import Role
    from rrm_ui.services.accounts import add_user, check_name, check_password, has_accounts, list_users

    try:
        check_name(args.name)  # refuse a bad name before asking for a password
        password = _read_password(args.password_stdin)
        check_password(password)
        repo = _repo(args)
        first = not has_accounts(repo)
        role = Role.ADMIN if args.admin else Role.REVIEWER if args.reviewer else Role.ANNOTATOR
        acct = add_user(repo, args.name, password, role)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"added {acct.role.value} {acct.name!r}")
    if first:
        print("this is the first account: the app asks for a login from its next start")
    if not any(u.role is Role.ADMIN for u in list_users(repo)):
        print(
            "warning: no account is an admin. Annotators see only their own labels and jobs, so nobody can see "
            "every label, or pause, resume or cancel another user's jobs, nor the jobs started before accounts "
            "existed (owner 'local'). Make an admin: rrm-ui users add NAME --admin",
            file=sys.stderr,
        )
    return 0


def remove_command(args: argparse.Namespace) -> int:
    from rrm_ui.services.accounts import account, check_name, remove_password

    try:
        repo = _repo(args)
        name = check_name(args.name)
        found = account(repo, name)
        if found is None or not found.has_password:
            raise ValueError(f"no account named {name!r} can log in (see rrm-ui users list)")
        remove_password(repo, name)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"removed the login of {name!r}: its open sessions end at their next request; its labels stay")
    return 0


def reset_command(args: argparse.Namespace) -> int:
    from rrm_ui.services.accounts import account, check_name, check_password, set_password

    try:
        repo = _repo(args)
        name = check_name(args.name)
        if account(repo, name) is None:
            raise ValueError(f"no annotator named {name!r} (see rrm-ui users list)")
        password = _read_password(args.password_stdin)
        check_password(password)
        set_password(repo, name, password)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"new password for {name!r}: its open sessions end at their next request")
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
