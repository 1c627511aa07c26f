# Sourced by scripts/test, scripts/test-on and .ci/run: which Pythons edged supports, which of
# them are on this machine, and a venv with edged and its test extras for each.
# Run from the repository root (setup.sh cds there).

SUPPORTED_MINORS="3.11 3.12 3.13"
# Unit and integration tests run on two workers (pytest-xdist): each test has its own broker,
# ports, files and database. Fault tests never do (scripts/test says why).
PARALLEL=(-n 2 --dist worksteal)
MIN_PATCH_3_11=2  # 3.11.2: Debian 12's python3, the oldest a till runs
DISTRIBUTION_PYTHON=/usr/bin/python3

# The full version of interpreter $1 (e.g. 3.11.2), or nothing if it does not run.
python_version() {
    "$1" -c 'import platform; print(platform.python_version())' 2>/dev/null
}

# Succeeds if version $1 (X.Y.Z) is one edged supports.
version_supported() {
    local minor="${1%.*}" patch="${1##*.}"
    case " $SUPPORTED_MINORS " in *" $minor "*) ;; *) return 1 ;; esac
    [ "$minor" != 3.11 ] || [ "$patch" -ge "$MIN_PATCH_3_11" ]
}

# The interpreter the whole suite runs on: EDGED_TEST_PYTHON if set, else the distribution's
# own python3 when it is supported (the tills run it), else the developer's .venv.
primary_python() {
    if [ -n "${EDGED_TEST_PYTHON:-}" ]; then
        echo "$EDGED_TEST_PYTHON"
        return
    fi
    local version
    version="$(python_version "$DISTRIBUTION_PYTHON")"
    if [ -n "$version" ] && version_supported "$version"; then
        echo "$DISTRIBUTION_PYTHON"
    else
        echo "note: $DISTRIBUTION_PYTHON is ${version:-missing}, not a supported version" \
            "($SUPPORTED_MINORS, 3.11 from 3.11.$MIN_PATCH_3_11); the suite runs on .venv" >&2
        echo .venv/bin/python
    fi
}

# The interpreters .ci/run tries besides the primary: EDGED_PYTHONS (space-separated paths) if
# set, else the newest 3.12 and 3.13 found on PATH, under pyenv or in /usr/bin and /usr/local/bin.
extra_pythons() {
    if [ -n "${EDGED_PYTHONS+set}" ]; then
        echo "$EDGED_PYTHONS"
        return
    fi
    local minor candidate found
    for minor in 3.12 3.13; do
        found=""
        for candidate in \
            "$(command -v "python$minor" 2>/dev/null)" \
            "$(printf '%s\n' "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$minor".*/bin/python"$minor" \
                | sort -V | tail -n 1)" \
            "/usr/bin/python$minor" "/usr/local/bin/python$minor"; do
            if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c '' 2>/dev/null; then
                found="$candidate"
                break
            fi
        done
        [ -z "$found" ] || echo "$found"
    done
}

# Makes sure interpreter $1 can create venvs; on Debian that is the python3-venv package.
ensure_venv_module() {
    "$1" -c 'import ensurepip, venv' 2>/dev/null && return
    local minor
    minor="$("$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && [ "$1" = "$DISTRIBUTION_PYTHON" ]; then
        echo "installing python3-venv with apt-get (for $1)" >&2
        apt-get update -qq \
            && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python$minor-venv" >/dev/null
    else
        echo "$1 cannot make venvs: install its venv module" \
            "(on Debian/Ubuntu: sudo apt-get install python$minor-venv) and rerun" >&2
        return 1
    fi
}

# The venv for interpreter $1, made and filled with edged[test] if needed: .venv-X.Y.Z, or .venv
# itself when .venv already runs on that interpreter. Prints the venv's python.
test_venv() {
    local python="$1" version venv
    version="$(python_version "$python")"
    if [ -z "$version" ]; then
        echo "$python does not run" >&2
        return 1
    fi
    if [ "$python" = .venv/bin/python ] || [ "$(realpath "$python")" = "$(venv_base .venv)" ]; then
        echo .venv/bin/python  # setup.sh keeps it installed
        return
    fi
    venv=".venv-$version"
    if [ ! -x "$venv/bin/python" ] || [ "$(venv_base "$venv")" != "$(realpath "$python")" ]; then
        ensure_venv_module "$python"
        rm -rf "$venv"
        echo "creating $venv from $python" >&2
        "$python" -m venv "$venv"
    fi
    # (re)install when the venv is new or pyproject.toml changed since the last install
    if [ ! -e "$venv/.edged-installed" ] || [ pyproject.toml -nt "$venv/.edged-installed" ]; then
        "$venv/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]' >&2 \
            2> >(grep -v "^WARNING: Location" >&2)
        touch "$venv/.edged-installed"
    fi
    echo "$venv/bin/python"
}

# The real path of the interpreter venv $1 was made from (empty if there is none).
venv_base() {
    [ -x "$1/bin/python" ] || return 0
    realpath "$("$1/bin/python" -c 'import sys; print(sys._base_executable)')" 2>/dev/null
}
