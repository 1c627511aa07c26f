# Sourced by scripts/test, scripts/demo and scripts/bench: a fresh machine to a ready .venv.
# Creates .venv, installs edged with its test extras, and makes sure mosquitto exists.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -n "${EDGED_SETUP_DONE:-}" ]; then
    return 0  # a parent script (scripts/test calling scripts/test-on) did it already
fi

if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing mosquitto with apt-get" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null
    else
        echo "mosquitto is missing: install it (sudo apt-get install mosquitto) and rerun" >&2
        exit 1
    fi
fi
export PATH="$PATH:/usr/sbin"

if ! command -v systemd-analyze >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing systemd (for systemd-analyze) with apt-get" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
    else
        echo "systemd-analyze is missing: the unit-file tests skip (sudo apt-get install systemd)" >&2
    fi
fi

# The collector's contract tests run on SQLite and on PostgreSQL (127.0.0.1:5432, database
# `test`, trust auth for local TCP; EDGED_TEST_PG=URL names another server). Installed and
# started here when we may; the PostgreSQL tests skip, saying why, when no server answers.
if ! command -v pg_lsclusters >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing postgresql with apt-get (for the collector's tests)" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null \
            || echo "postgresql could not be installed: its collector tests skip" >&2
    else
        echo "postgresql is missing: the collector's PostgreSQL tests skip" \
            "(sudo apt-get install postgresql)" >&2
    fi
fi
if [ -z "${EDGED_TEST_PG:-}" ] && [ "$(id -u)" = 0 ] && command -v pg_lsclusters >/dev/null 2>&1; then
    pg_lsclusters --no-header 2>/dev/null | while read -r version cluster _port status _rest; do
        if [ "$status" = down ]; then
            echo "starting PostgreSQL $version/$cluster" >&2
            pg_ctlcluster "$version" "$cluster" start >&2 || true
        fi
    done
    if ! su postgres -c "psql -lqt" 2>/dev/null | cut -d'|' -f1 | grep -qw test; then
        su postgres -c "createdb test" >&2 || true
    fi
    # A server installed as Debian ships it wants passwords on TCP: then a role for the tests.
    trust="postgresql://postgres@127.0.0.1:5432/test"
    if ! PGCONNECT_TIMEOUT=3 psql -w "$trust" -qc "" >/dev/null 2>&1; then
        su postgres -c "psql -q" >&2 <<'SQL' || true
DO $$BEGIN CREATE ROLE edged_test LOGIN CREATEDB PASSWORD 'edged_test';
EXCEPTION WHEN duplicate_object THEN NULL; END$$;
SQL
        export EDGED_TEST_PG="postgresql://edged_test:edged_test@127.0.0.1:5432/test"
    fi
fi

if [ ! -x .venv/bin/python ]; then
    echo "first run: creating .venv and installing edged with its test tools (about 30 s)..." >&2
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 \
    | grep -v "^WARNING: Location" >&2 || true
export EDGED_SETUP_DONE=1
