"""A stand-in for Supabase's REST (PostgREST) and Storage APIs, on 127.0.0.1, for the tests.

No PostgREST can run on these machines, so this real HTTP server parses each request the way
PostgREST does and executes it on the real PostgreSQL test database (so uniqueness, transactions
and the schema's SQL functions behave for real):

- `GET/POST/PATCH/DELETE /rest/v1/<table>` with `select=` (plain columns), `order=`, `limit=`,
  `offset=`, `on_conflict=` and filters `col=<op>.<value>` (eq, neq, gt, gte, lt, lte, in, is);
  `Prefer: return=...`, `resolution=merge-duplicates|ignore-duplicates`, `count=exact`;
  at most `max_rows` (Supabase's default 1000) rows per response;
- `POST /rest/v1/rpc/<function>` with a JSON object of named arguments, run in one transaction;
- `POST/GET /storage/v1/object/<bucket>/<path>` (multipart upload, kept in memory).

It is stricter than PostgREST on purpose: unknown query parameters, operators, preferences,
columns and tables are refused, URLs longer than `max_url` get 414 as a proxy would, and every
request is recorded (`requests`) so tests can check chunk sizes. Errors use PostgREST's bodies
(`{"code","details","hint","message"}`, 23505 -> 409, PGRST202/PGRST205 -> 404, ...) and the
gateway's 401 for a bad key. `fail_next` makes the next requests answer 503 (or drop the
connection) and `lose_next` runs requests but drops their answers, to exercise retries.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

OPERATORS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
RESERVED = {"select", "order", "limit", "offset", "on_conflict", "columns"}
PREFERENCES = {
    "return": {"minimal", "representation", "headers-only"},
    "resolution": {"merge-duplicates", "ignore-duplicates"},
    "count": {"exact", "planned", "estimated"},
    "missing": {"default", "null"},
}


@dataclass
class Recorded:
    method: str
    path: str
    url_length: int
    query: list[tuple[str, str]]
    prefer: dict[str, str]
    body: Any
    status: int = 0


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class PostgrestError(Exception):
    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def _status_of(sqlstate: str) -> int:
    """PostgREST's mapping of SQLSTATE to HTTP status (the common cases)."""
    if sqlstate in ("23503", "23505"):
        return 409
    if sqlstate in ("42883", "42P01"):
        return 404
    if sqlstate == "42501":
        return 403
    if sqlstate.startswith(("08", "53")):
        return 503
    if sqlstate.startswith(("25", "38", "39", "3B", "40", "55", "57", "58", "XX", "F0", "HV")):
        return 500
    return 400


def parse_in_list(text: str) -> list[str]:
    """PostgREST's `(a,"b,c","d\\"e")` list syntax."""
    if not (text.startswith("(") and text.endswith(")")):
        raise PostgrestError(400, "PGRST100", f'"failed to parse filter (in.{text})"')
    items: list[str] = []
    buf: list[str] = []
    quoted = escaped = False
    was_quoted = False
    for ch in text[1:-1]:
        if escaped:
            buf.append(ch)
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
            was_quoted = True
        elif ch == "," and not quoted:
            items.append("".join(buf))
            buf, was_quoted = [], False
        else:
            buf.append(ch)
    if buf or was_quoted or items:
        items.append("".join(buf))
    return items


class PostgrestStandIn:
    def __init__(
        self, dsn: str, service_key: str, *, max_rows: int = 1000, max_url: int = 8192
    ) -> None:
        self.dsn = dsn
        self.service_key = service_key
        self.max_rows = max_rows
        self.max_url = max_url
        self.requests: list[Recorded] = []
        self.fail_next: list[int] = []  # statuses to answer with next; 0 drops the connection
        self.lose_next = 0  # run the next N requests, then drop the connection (answer lost)
        self.objects: dict[str, tuple[bytes, str]] = {}
        self._lock = threading.Lock()
        self._pool = ConnectionPool(dsn, min_size=1, max_size=8, open=True)
        self._columns: dict[str, dict[str, str]] = {}
        handler = self._handler_class()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> PostgrestStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._pool.close()

    def rest_requests(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path.startswith("/rest/")]

    # -- schema cache ---------------------------------------------------------------------------
    def columns(self, table: str) -> dict[str, str]:
        if table not in self._columns:
            with self._pool.connection() as conn:
                rows = conn.execute(
                    "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
                    " JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n"
                    " ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relname = %s"
                    " AND c.relkind IN ('r', 'v', 'p') AND a.attnum > 0 AND NOT a.attisdropped",
                    (table,),
                ).fetchall()
            if not rows:
                raise PostgrestError(
                    404,
                    "PGRST205",
                    f"Could not find the table 'public.{table}' in the schema cache",
                )
            self._columns[table] = dict(rows)
        return self._columns[table]

    # -- request handling -----------------------------------------------------------------------
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                reply = outer.handle(self.command, self.path, dict(self.headers.items()), raw)
                if reply is None:  # drop the connection, as a dying proxy would
                    self.close_connection = True
                    self.connection.close()
                    return
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = do_PATCH = do_DELETE = do_HEAD = _serve

        return Handler

    def handle(
        self, method: str, target: str, headers: dict[str, str], raw: bytes
    ) -> _Reply | None:
        lower = {k.lower(): v for k, v in headers.items()}
        parts = urlsplit(target)
        query = parse_qsl(parts.query, keep_blank_values=True)
        prefer: dict[str, str] = {}
        body: Any = None
        record = Recorded(method, parts.path, len(target), query, prefer, None)
        with self._lock:
            self.requests.append(record)
            injected = self.fail_next.pop(0) if self.fail_next else None
        if injected is not None:
            if injected == 0:
                return None
            record.status = injected
            return _Reply(
                injected,
                b"<html><body>upstream unavailable</body></html>",
                {"Content-Type": "text/html"},
            )
        try:
            if len(target) > self.max_url:
                record.status = 414
                return _Reply(
                    414,
                    b"<html><body>414 Request-URI Too Large</body></html>",
                    {"Content-Type": "text/html"},
                )
            key = lower.get("apikey", "")
            if key != self.service_key or lower.get("authorization") != f"Bearer {key}":
                reply = _json_reply(
                    401,
                    {
                        "message": "Invalid API key",
                        "hint": "Double check your Supabase `anon` or `service_role` API key.",
                    },
                )
                record.status = 401
                return reply
            for item in lower.get("prefer", "").split(","):
                item = item.strip()
                if not item:
                    continue
                name, _, value = item.partition("=")
                if value not in PREFERENCES.get(name, set()):
                    raise PostgrestError(400, "PGRST122", f"Invalid preference: {item}")
                prefer[name] = value
            if parts.path.startswith("/storage/v1/object/"):
                reply = self._storage(method, unquote(parts.path[19:]), lower, raw)
            elif parts.path.startswith("/rest/v1/"):
                if raw:
                    try:
                        body = json.loads(raw)
                    except ValueError as exc:
                        raise PostgrestError(400, "PGRST102", "Empty or invalid json") from exc
                record.body = body
                name = unquote(parts.path[len("/rest/v1/") :])
                if name.startswith("rpc/"):
                    if method != "POST":
                        raise PostgrestError(405, "PGRST101", "Only POST is used for functions")
                    reply = self._rpc(name[4:], body or {}, query)
                else:
                    reply = self._table(method, name, query, prefer, body)
            else:
                raise PostgrestError(404, "PGRST125", "Invalid path specified in request URL")
        except PostgrestError as exc:
            reply = _json_reply(
                exc.status,
                {
                    "code": exc.code,
                    "details": exc.details,
                    "hint": None,
                    "message": exc.message,
                },
            )
        except psycopg.Error as exc:
            diag = exc.diag
            state = exc.sqlstate or "XX000"
            reply = _json_reply(
                _status_of(state),
                {
                    "code": state,
                    "details": diag.message_detail,
                    "hint": diag.message_hint,
                    "message": diag.message_primary or str(exc),
                },
            )
        record.status = reply.status
        with self._lock:
            if self.lose_next > 0:
                self.lose_next -= 1
                return None
        return reply

    # -- tables ---------------------------------------------------------------------------------
    def _column(self, table: str, name: str) -> str:
        cols = self.columns(table)
        if name not in cols:
            raise PostgrestError(400, "42703", f"column {table}.{name} does not exist")
        return cols[name]

    def _filters(
        self, table: str, query: list[tuple[str, str]]
    ) -> tuple[sql.Composable, list[Any]]:
        clauses: list[sql.Composable] = []
        params: list[Any] = []
        for key, value in query:
            if key in RESERVED:
                continue
            ctype = self._column(table, key)
            op, dot, arg = value.partition(".")
            if not dot:
                raise PostgrestError(400, "PGRST100", f'"failed to parse filter ({value})"')
            col = sql.SQL("{}.{}").format(sql.Identifier(table), sql.Identifier(key))
            if op in OPERATORS:
                clauses.append(
                    sql.SQL("{} " + OPERATORS[op] + " %s::{}").format(col, sql.SQL(ctype))
                )
                params.append(arg)
            elif op == "in":
                clauses.append(sql.SQL("{} = ANY(%s::{}[])").format(col, sql.SQL(ctype)))
                params.append(parse_in_list(arg))
            elif op == "is" and arg in ("null", "true", "false"):
                clauses.append(sql.SQL("{} IS " + arg.upper()).format(col))
            else:
                raise PostgrestError(400, "PGRST100", f'"failed to parse filter ({value})"')
        if not clauses:
            return sql.SQL(""), params
        return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses), params

    def _select_list(self, table: str, query: dict[str, str]) -> sql.Composable:
        text = query.get("select", "*")
        if text == "*":
            return sql.SQL("*")
        names = text.split(",")
        for n in names:
            if not re.fullmatch(r"[a-z_][a-z0-9_]*", n):
                raise PostgrestError(
                    400, "PGRST100", f'"failed to parse select parameter ({text})"'
                )
            self._column(table, n)
        return sql.SQL(", ").join(sql.Identifier(n) for n in names)

    def _order(self, table: str, text: str) -> sql.Composable:
        terms = []
        for term in text.split(","):
            name, *mods = term.split(".")
            self._column(table, name)
            piece = sql.Identifier(name)
            parts: list[sql.Composable] = [piece]
            for m in mods:
                if m in ("asc", "desc"):
                    parts.append(sql.SQL(m.upper()))
                elif m in ("nullsfirst", "nullslast"):
                    parts.append(sql.SQL("NULLS FIRST" if m == "nullsfirst" else "NULLS LAST"))
                else:
                    raise PostgrestError(400, "PGRST100", f'"failed to parse order ({text})"')
            terms.append(sql.SQL(" ").join(parts))
        return sql.SQL(" ORDER BY ") + sql.SQL(", ").join(terms)

    def _table(
        self,
        method: str,
        table: str,
        query: list[tuple[str, str]],
        prefer: dict[str, str],
        body: Any,
    ) -> _Reply:
        self.columns(table)
        q = dict(query)
        for key in q:
            if key not in RESERVED:
                self._column(table, key)
        where, params = self._filters(table, query)
        tbl = sql.Identifier(table)
        if method == "GET":
            limit = min(int(q.get("limit", self.max_rows)), self.max_rows)
            inner = sql.SQL("SELECT {} FROM {}{}{} LIMIT {} OFFSET {}").format(
                self._select_list(table, q),
                tbl,
                where,
                self._order(table, q["order"]) if "order" in q else sql.SQL(""),
                sql.Literal(limit),
                sql.Literal(int(q.get("offset", 0))),
            )
            with self._pool.connection() as conn:
                row = conn.execute(
                    sql.SQL("SELECT coalesce(json_agg(t), '[]')::text FROM ({}) t").format(inner),
                    params,
                ).fetchone()
                total = None
                if prefer.get("count") == "exact":
                    c = conn.execute(
                        sql.SQL("SELECT count(*) FROM {}{}").format(tbl, where), params
                    ).fetchone()
                    total = c[0] if c else 0
            assert row is not None
            text = row[0]
            n = len(json.loads(text))
            start = int(q.get("offset", 0))
            rng = f"{start}-{start + n - 1}" if n else "*"
            headers = {
                "Content-Type": "application/json; charset=utf-8",
                "Content-Range": f"{rng}/{total if total is not None else '*'}",
            }
            return _Reply(200, text.encode(), headers)
        if method in ("PATCH", "DELETE") and not where.as_string():
            verb = "UPDATE" if method == "PATCH" else "DELETE"
            raise PostgrestError(400, "21000", f"{verb} requires a WHERE clause")
        if method == "POST":
            rows = body if isinstance(body, list) else [body]
            if not rows or not all(isinstance(r, dict) for r in rows):
                raise PostgrestError(400, "PGRST102", "Empty or invalid json")
            if "columns" in q:  # what postgrest-py sends with a list of rows
                keys = parse_in_list(f"({q['columns']})")
                if any(set(r) - set(keys) for r in rows):
                    raise PostgrestError(400, "PGRST102", "Row keys outside columns=")
                if prefer.get("missing") == "default" and any(set(r) != set(keys) for r in rows):
                    raise PostgrestError(400, "PGRST100", "the stand-in fills no defaults")
            else:
                keys = list(rows[0])
                if any(set(r) != set(keys) for r in rows):
                    raise PostgrestError(400, "PGRST102", "All object keys must match")
            for k in keys:
                self._column(table, k)
            cols = sql.SQL(", ").join(sql.Identifier(k) for k in keys)
            conflict = sql.SQL("")
            if "resolution" in prefer:
                target = q.get("on_conflict")
                if target is None:
                    with self._pool.connection() as conn:
                        pk = conn.execute(
                            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON"
                            " a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
                            " WHERE i.indrelid = %s::regclass AND i.indisprimary",
                            (table,),
                        ).fetchall()
                    target = ",".join(r[0] for r in pk)
                tcols = sql.SQL(", ").join(sql.Identifier(c) for c in target.split(","))
                if prefer["resolution"] == "ignore-duplicates":
                    conflict = sql.SQL(" ON CONFLICT ({}) DO NOTHING").format(tcols)
                else:
                    sets = sql.SQL(", ").join(
                        sql.SQL("{0} = excluded.{0}").format(sql.Identifier(k)) for k in keys
                    )
                    conflict = sql.SQL(" ON CONFLICT ({}) DO UPDATE SET {}").format(tcols, sets)
            stmt = sql.SQL(
                "INSERT INTO {t} ({c}) SELECT {c} FROM json_populate_recordset(NULL::{t}, %s::json)"
                "{conflict} RETURNING *"
            ).format(t=tbl, c=cols, conflict=conflict)
            params = [json.dumps(rows)]
            status = 201
        elif method == "PATCH":
            if not isinstance(body, dict) or not body:
                raise PostgrestError(400, "PGRST102", "Empty or invalid json")
            for k in body:
                self._column(table, k)
            sets = sql.SQL(", ").join(
                sql.SQL("{0} = r.{0}").format(sql.Identifier(k)) for k in body
            )
            stmt = sql.SQL(
                "UPDATE {t} SET {s} FROM json_populate_record(NULL::{t}, %s::json) r{w}"
                " RETURNING {t}.*"
            ).format(t=tbl, s=sets, w=where)
            params = [json.dumps(body), *params]
            status = 200
        elif method == "DELETE":
            stmt = sql.SQL("DELETE FROM {}{} RETURNING *").format(tbl, where)
            status = 200
        else:
            raise PostgrestError(405, "PGRST117", f"Unsupported HTTP method: {method}")
        with self._pool.connection() as conn:
            row = conn.execute(
                sql.SQL("WITH w AS ({}) SELECT coalesce(json_agg(w), '[]')::text FROM w").format(
                    stmt
                ),
                params,
            ).fetchone()
        assert row is not None
        if prefer.get("return") == "representation":
            return _Reply(status, row[0].encode(), {"Content-Type": "application/json"})
        return _Reply(204 if method != "POST" else 201, b"")

    # -- functions ------------------------------------------------------------------------------
    def _rpc(self, name: str, body: Any, query: list[tuple[str, str]]) -> _Reply:
        if not isinstance(body, dict):
            raise PostgrestError(400, "PGRST102", "Empty or invalid json")
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT p.proretset, format_type(p.prorettype, NULL), p.pronargs,"
                " p.pronargdefaults, coalesce(p.proargnames, '{}'),"
                " array(SELECT format_type(t, NULL) FROM unnest(p.proargtypes::oid[])"
                "       WITH ORDINALITY u(t, o) ORDER BY o)"
                " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                " WHERE n.nspname = 'public' AND p.proname = %s",
                (name,),
            ).fetchall()
        match = None
        for retset, rettype, nargs, ndefaults, argnames, types in rows:
            names = list(argnames)[:nargs]
            required = set(names[: nargs - ndefaults])
            if required <= set(body) <= set(names):
                match = (retset, rettype, names, list(types))
        if match is None:
            keys = ", ".join(sorted(body))
            raise PostgrestError(
                404,
                "PGRST202",
                f"Could not find the function public.{name}({keys}) in the schema cache",
                f"Searched for the function public.{name} with parameters {keys} or with a "
                "single unnamed json/jsonb parameter, but no matches were found in the schema "
                "cache.",
            )
        retset, rettype, names, types = match
        given = [(n, t) for n, t in zip(names, types, strict=True) if n in body]
        fn = sql.Identifier(name)
        call_args = sql.SQL(", ").join(
            sql.SQL("{0} := _.{0}").format(sql.Identifier(n)) for n, _ in given
        )
        record_def = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(t)) for n, t in given
        )
        source = (
            sql.SQL("json_to_record(%s::json) AS _({})").format(record_def)
            if given
            else sql.SQL("(SELECT 1) AS _")
        )
        if retset:
            stmt = sql.SQL("SELECT coalesce(json_agg(r), '[]')::text FROM {}, LATERAL {}({}) r")
        else:
            stmt = sql.SQL("SELECT to_json({1}({2}))::text FROM {0}")
        with self._pool.connection() as conn:
            row = conn.execute(
                stmt.format(source, fn, call_args), [json.dumps(body)] if given else []
            ).fetchone()
        if rettype == "void":
            return _Reply(204, b"")
        text = row[0] if row and row[0] is not None else "null"
        return _Reply(200, text.encode(), {"Content-Type": "application/json"})

    # -- storage --------------------------------------------------------------------------------
    def _storage(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> _Reply:
        if method == "POST":
            ctype = headers.get("content-type", "")
            if not ctype.startswith("multipart/form-data"):
                return _json_reply(
                    400,
                    {
                        "statusCode": "400",
                        "error": "Bad Request",
                        "message": "expected multipart/form-data",
                    },
                )
            msg = BytesParser(policy=HTTP).parsebytes(
                f"Content-Type: {ctype}\r\n\r\n".encode() + raw
            )
            parts = [
                p
                for p in msg.iter_parts()
                if p.get_param("name", header="content-disposition") == "file"
            ]
            if not parts:
                return _json_reply(
                    400, {"statusCode": "400", "error": "Bad Request", "message": "no file part"}
                )
            exists = path in self.objects
            if exists and headers.get("x-upsert") != "true":
                return _json_reply(
                    400,
                    {
                        "statusCode": "409",
                        "error": "Duplicate",
                        "message": "The resource already exists",
                    },
                )
            data = parts[0].get_payload(decode=True)
            assert isinstance(data, bytes)
            self.objects[path] = (data, parts[0].get_content_type())
            return _json_reply(200, {"Key": path, "Id": path})
        if method == "GET":
            if path not in self.objects:
                return _json_reply(
                    400, {"statusCode": "404", "error": "not_found", "message": "Object not found"}
                )
            data, ctype = self.objects[path]
            return _Reply(200, data, {"Content-Type": ctype})
        if method == "DELETE":  # remove([...]): DELETE /object/<bucket> {"prefixes": [...]}
            body = json.loads(raw or b"{}")
            gone = []
            for prefix in body.get("prefixes", []):
                if self.objects.pop(f"{path}/{prefix}", None) is not None:
                    gone.append({"name": prefix})
            return _json_reply(200, gone)
        return _json_reply(405, {"message": "method not allowed"})


def _json_reply(status: int, body: Any) -> _Reply:
    return _Reply(status, json.dumps(body).encode(), {"Content-Type": "application/json"})
