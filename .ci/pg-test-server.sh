# Source this (bash) to get a throwaway PostgreSQL for the tests: installs PostgreSQL with apt if
# it is missing, initdb's a temporary cluster (as the `postgres` user when run as root: PostgreSQL
# refuses to run as root), starts it on 127.0.0.1 with password authentication, exports
# FACEBATCH_TEST_PG_DSN, and stops and removes it when the sourcing shell exits.
#   source .ci/pg-test-server.sh && QT_QPA_PLATFORM=offscreen .venv/bin/python -m pytest
_fb_pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
FB_PG_BIN="$(_fb_pg_bin)"
if [ -z "$FB_PG_BIN" ] || [ ! -x "$FB_PG_BIN/initdb" ]; then
  echo "CI: PostgreSQL is missing; installing it with apt" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q postgresql >/dev/null
  FB_PG_BIN="$(_fb_pg_bin)"
fi
FB_PG_DIR="$(mktemp -d /tmp/facebatch-pg.XXXXXX)"
FB_PG_AS=()
if [ "$(id -u)" = 0 ]; then
  chown postgres "$FB_PG_DIR"
  FB_PG_AS=(runuser -u postgres --)
fi
FB_PG_PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
FB_PG_PASSWORD="fb-$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
"${FB_PG_AS[@]}" sh -c "umask 077; printf '%s\n' '$FB_PG_PASSWORD' > '$FB_PG_DIR/pw'"
"${FB_PG_AS[@]}" "$FB_PG_BIN/initdb" -D "$FB_PG_DIR/data" -U postgres --pwfile="$FB_PG_DIR/pw" \
  --auth=scram-sha-256 -E UTF8 --no-locale >/dev/null
"${FB_PG_AS[@]}" "$FB_PG_BIN/pg_ctl" -D "$FB_PG_DIR/data" -l "$FB_PG_DIR/log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $FB_PG_PORT -k $FB_PG_DIR -c fsync=off -c max_connections=300" \
  start >/dev/null
_fb_pg_stop() {
  "${FB_PG_AS[@]}" "$FB_PG_BIN/pg_ctl" -D "$FB_PG_DIR/data" -m fast -w stop >/dev/null 2>&1
  rm -rf "$FB_PG_DIR"
}
trap _fb_pg_stop EXIT
export FACEBATCH_TEST_PG_DSN="postgresql://postgres:$FB_PG_PASSWORD@127.0.0.1:$FB_PG_PORT/postgres"
echo "CI: PostgreSQL $("$FB_PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$FB_PG_PORT (FACEBATCH_TEST_PG_DSN)" >&2
