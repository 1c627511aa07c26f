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

if [ ! -x .venv/bin/python ]; then
    echo "first run: creating .venv and installing edged with its test tools (about 30 s)..." >&2
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 \
    | grep -v "^WARNING: Location" >&2 || true
export EDGED_SETUP_DONE=1
