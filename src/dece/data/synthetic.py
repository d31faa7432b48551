"""A built-in, Lyra-style synthetic dataset: NL description -> Python function with embedded SQL.

Written for the offline demo and the tests; deterministic by seed and cheap (about 20k rows/s).
Each example is assembled from independent choices, each with a matching phrase in the
description, so that a small seq2seq model can learn the mapping in a few epochs:

- connection: a ``conn`` argument, ``db.connect()``, or ``create_engine(url).connect()``;
- query: ``*`` / one column / two columns from one of 16 tables, with no condition (~20%), one
  ``=`` condition, two conditions joined by ``and``, or a ``>`` / ``<`` comparison, written inline
  in ``conn.execute(...)`` or first stored in a ``sql`` variable; ~8% use the ORM
  (``session.query(T).filter(...)``), which holds no SQL string;
- fetch: ``fetchall`` or ``fetchone``;
- post-processing: return, print and return, a ``for`` loop printing rows, ``jsonify``,
  a list comprehension, a ``None`` check, ``len``; optionally wrapped in ``try/except``.

Code follows Lyra's tokenisation: tokens separated by single spaces (also inside string
literals: ``" select * from users where id = : id "``), one ``"\\t "`` per indentation level,
``$name$`` placeholders for the function arguments in the description.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dece.data.example import Example

__all__ = ["TABLES", "synthetic_dataset"]

TABLES: dict[str, tuple[str, ...]] = {
    "users": ("id", "name", "email", "age", "city"),
    "flights": ("id", "origin", "destination", "duration", "airline"),
    "books": ("isbn", "title", "author", "year", "price"),
    "orders": ("order_id", "customer_id", "amount", "status", "created"),
    "products": ("product_id", "name", "price", "category", "stock"),
    "employees": ("emp_id", "name", "salary", "department", "manager_id"),
    "movies": ("movie_id", "title", "year", "rating", "director"),
    "students": ("student_id", "name", "grade", "major", "age"),
    "accounts": ("account_id", "owner", "balance", "currency", "status"),
    "sessions": ("session_id", "user_id", "token", "expires", "ip"),
    "reviews": ("review_id", "book_id", "user_id", "score", "content"),
    "passengers": ("id", "name", "flight_id", "seat", "age"),
    "courses": ("course_id", "title", "teacher", "credits", "room"),
    "messages": ("msg_id", "sender", "receiver", "body", "sent_at"),
    "tickets": ("ticket_id", "event", "price", "owner_id", "status"),
    "cities": ("city_id", "name", "country", "population", "zip"),
}
_RESULT_NAMES = ("result", "rows", "data", "res", "records", "values", "items", "output")
_VERBS = ("get", "select", "query", "fetch", "load", "find")
_NUMERIC = frozenset(
    {"age", "duration", "year", "price", "amount", "stock", "salary", "rating", "grade",
     "balance", "score", "credits", "population", "expires"}
)  # fmt: skip


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _indent(lines: list[tuple[int, str]]) -> str:
    """``(level, code)`` pairs -> Lyra-style text (``"\\t "`` per level)."""
    return "\n".join("\t " * level + code for level, code in lines)


def _condition(rng: np.random.Generator, columns: Sequence[str]) -> tuple[list, str, str]:
    """Choose a WHERE clause: (parameter columns, SQL text, description phrase)."""
    kind = rng.choice(["none", "eq", "eq", "eq", "and", "cmp"], p=[0.2, 0.2, 0.2, 0.15, 0.15, 0.1])
    if kind == "none":
        return [], "", ""
    first, second = (str(c) for c in rng.choice(columns, size=2, replace=False))
    if kind == "eq":
        phrase = _pick(
            rng,
            (f"where {first} is ${first}$", f"based on ${first}$", f"with {first} as ${first}$"),
        )
        return [first], f" where {first} = : {first}", phrase
    if kind == "and":
        phrase = f"where {first} is ${first}$ and {second} is ${second}$"
        return [first, second], f" where {first} = : {first} and {second} = : {second}", phrase
    numeric = [c for c in columns if c in _NUMERIC] or list(columns)
    column = _pick(rng, numeric)
    op, word = (">", "greater than") if rng.random() < 0.5 else ("<", "less than")
    return [column], f" where {column} {op} : {column}", f"where {column} is {word} ${column}$"


def _one_example(rng: np.random.Generator, example_id: str) -> Example:
    table = _pick(rng, list(TABLES))
    columns = TABLES[table]
    params, where_sql, where_nl = _condition(rng, columns)
    result = _pick(rng, _RESULT_NAMES)
    orm = rng.random() < 0.08 and len(params) == 1 and "=" in where_sql

    # Columns selected.
    n_cols = int(rng.choice([0, 1, 2], p=[0.5, 0.35, 0.15]))
    selected = [str(c) for c in rng.choice(columns, size=n_cols, replace=False)]
    if orm or not selected:
        cols_sql, cols_nl = "*", _pick(rng, ("all columns", "all the information", "all data"))
    else:
        cols_sql = " , ".join(selected)
        cols_nl = f"the {' and '.join(selected)} column" + ("s" if len(selected) > 1 else "")

    # Connection set-up.
    setup = _pick(rng, ("direct", "direct", "connect", "engine"))
    imports: list[str] = []
    body: list[tuple[int, str]] = []
    if orm:
        conn, args = "session", ["session"]
        setup_nl = "Use ORM and $session$ to"
    elif setup == "direct":
        conn = _pick(rng, ("conn", "connection", "db_conn"))
        args, setup_nl = [conn], _pick(rng, (f"Use ${conn}$ to", f"Using ${conn}$ ,"))
    elif setup == "connect":
        conn, args = "conn", [_pick(rng, ("db", "engine"))]
        setup_nl = f"Connect to the database through ${args[0]}$ and"
        body.append((1, f"conn = {args[0]} . connect ( )"))
    else:
        conn, args = "conn", ["db_url"]
        imports.append("from sqlalchemy import create_engine")
        setup_nl = "Get the database engine via $db_url$ , establish a connection and"
        body += [(1, "engine = create_engine ( db_url )"), (1, "conn = engine . connect ( )")]
    args += params

    # Query + fetch.
    fetch = "fetchall" if rng.random() < 0.6 else "fetchone"
    fetch_nl = {
        "fetchall": _pick(rng, ("get all the data", "get all results", "fetch all rows")),
        "fetchone": _pick(rng, ("get the first piece of data", "get the first row")),
    }[fetch]
    query_nl = f"query {cols_nl} in the {table} table" + (f" {where_nl}" if where_nl else "")
    binds = " , ".join(f'" {p} " : {p}' for p in params)
    call_args = f" , {{ {binds} }}" if params else ""
    sql = f'" select {cols_sql} from {table}{where_sql} "'
    if orm:
        column = params[0]
        orm_fetch = "all" if fetch == "fetchall" else "first"
        query_code = (
            f"session . query ( {table} ) . filter ( {table} . {column} == {column} ) "
            f". {orm_fetch} ( )"
        )
        query_sentence = f"{setup_nl} execute SQL ( {query_nl} ) and {fetch_nl}"
    elif rng.random() < 0.3:
        body.append((1, f"sql = {sql}"))
        query_code = f"{conn} . execute ( sql{call_args} ) . {fetch} ( )"
        query_sentence = f"Set up SQL ( {query_nl} ) . {setup_nl} execute it and {fetch_nl}"
    else:
        query_code = f"{conn} . execute ( {sql}{call_args} ) . {fetch} ( )"
        query_sentence = f"{setup_nl} execute SQL ( {query_nl} ) and {fetch_nl}"

    # Post-processing.
    many = fetch == "fetchall"
    options = ["return", "print_return", "jsonify", "len" if many else "none_check"]
    if many:
        options += ["loop", "listcomp"]
    post = _pick(rng, options)
    guarded = rng.random() < 0.25
    lvl = 2 if guarded else 1
    post_lines: list[tuple[int, str]] = [(lvl, f"{result} = {query_code}")]
    if post == "return":
        post_lines.append((lvl, f"return {result}"))
        post_nl = _pick(rng, ("Return the query results", "Return the result"))
    elif post == "print_return":
        post_lines += [(lvl, f"print ( {result} )"), (lvl, f"return {result}")]
        post_nl = "Print the query results and return them"
    elif post == "jsonify":
        imports.append("from flask import jsonify")
        post_lines.append((lvl, f"return jsonify ( {result} )"))
        post_nl = "Return the query results in jsonify form"
    elif post == "len":
        post_lines.append((lvl, f"return len ( {result} )"))
        post_nl = "Return the number of query results"
    elif post == "none_check":
        post_lines += [
            (lvl, f"if {result} is None :"),
            (lvl + 1, "return None"),
            (lvl, f"return {result} [ 0 ]"),
        ]
        post_nl = "If the result is None , return None ; otherwise return its first element"
    elif post == "loop":
        row = _pick(rng, ("row", "item", "record", "r"))
        post_lines += [(lvl, f"for {row} in {result} :"), (lvl + 1, f"print ( {row} )")]
        post_nl = "Use a for loop to iterate through the query results and print each one"
    else:
        post_lines.append((lvl, f"return [ row [ 0 ] for row in {result} ]"))
        post_nl = "Return the first element of each row as a list"
    if guarded:
        body += [(1, "try :"), *post_lines, (1, "except Exception as e :")]
        if rng.random() < 0.5:
            body.append((2, "print ( e )"))
            except_nl = "If an Exception occurs , print it"
        else:
            body.append((2, "return None"))
            except_nl = "If an Exception occurs , return None"
        sentences = [f"Try to {query_sentence[0].lower()}{query_sentence[1:]}", post_nl, except_nl]
    else:
        body += post_lines
        sentences = [query_sentence, post_nl]
    if setup != "direct" and not orm and post in ("loop",):
        body.append((1, "conn . close ( )"))
        sentences.append("Finally close the connection")

    name = (
        _pick(rng, _VERBS)
        + "_"
        + table
        + (f"_by_{params[0]}" if rng.random() < 0.3 and params else "")
    )
    head = f"def {name} ( {' , '.join(dict.fromkeys(args))} ) :"
    target = "\n".join([*imports, head, _indent(body)])
    source = ". ".join(sentences) + "."
    return Example(id=example_id, source=source, target=target)


def synthetic_dataset(
    *, seed: int = 0, sizes: tuple[int, int, int] = (1600, 200, 200)
) -> dict[str, list[Example]]:
    """Generate the built-in dataset, ``{"train": [...], "valid": [...], "test": [...]}``.

    Ids are ``f"{split}-{i}"``. The same seed gives the same rows; sources are unique across all
    splits (no train/test leakage).

    Args:
        seed: seed of the numpy Generator that draws every choice.
        sizes: number of rows in train, valid and test (each >= 0).
    """
    if len(sizes) != 3 or any(int(n) != n or n < 0 for n in sizes):
        raise ValueError(f"sizes must be three non-negative integers, got {sizes!r}")
    rng = np.random.default_rng(seed)
    seen: set[str] = set()
    splits: dict[str, list[Example]] = {}
    for split, size in zip(("train", "valid", "test"), sizes, strict=True):
        rows: list[Example] = []
        attempts = 0
        while len(rows) < size:
            attempts += 1
            if attempts > 50 * size + 1000:
                raise ValueError(f"sizes {sizes!r}: cannot draw that many distinct examples")
            example = _one_example(rng, f"{split}-{len(rows)}")
            if example.source not in seen:
                seen.add(example.source)
                rows.append(example)
        splits[split] = rows
    return splits
