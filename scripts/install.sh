#!/usr/bin/env bash
# Install battery-inspector on an edge box (or into a staging root), or uninstall it.
# Run `scripts/install.sh --help` for what it does; the operator guide explains the result.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/install.sh [--root DIR] [--no-venv] [--wheelhouse DIR] [--extras LIST]
       scripts/install.sh --uninstall [--root DIR]

Installs battery-inspector from this source tree, as root:
  - the system user and group `inspector` (sysusers.d, /usr/lib/sysusers.d/inspector.conf);
  - the data directory /var/lib/inspector (tmpfiles.d), with bundles/ and weights/;
  - /etc/inspector with inspector.yaml and inspector.env, copied from the examples only when
    absent (an existing configuration is never overwritten);
  - a virtual environment /opt/battery-inspector/venv with this source tree pip-installed
    (skipped when the installed copy already came from identical sources);
  - the documentation under /opt/battery-inspector/docs;
  - the systemd units inspector, inspector-engine, inspector-explainer and inspector-web,
    enabled (not started: edit /etc/inspector/inspector.yaml first).
Running it again changes nothing unless the sources changed.

Options:
  --root DIR        install into DIR instead of / (a staging root or a test): nothing outside
                    DIR is touched and systemctl is never called; units are enabled by
                    creating the .wants/ links. Ownership is set only when run as root.
  --no-venv         do not create the virtual environment or pip-install (tests use this:
                    installing torch into a temporary root is too heavy).
  --wheelhouse DIR  pip-install offline from the wheels in DIR (pip wheel -w DIR .).
                    Without it pip resolves the dependencies from the index pip is
                    configured with; the installer itself downloads nothing.
  --extras LIST     pip extras to install with the package, e.g. "llm" or "llm,gpu".
  --uninstall       stop and disable the units, remove them, the venv and the docs. Keeps
                    the data (/var/lib/inspector), the configuration (/etc/inspector) and
                    the user, so a later install picks up where it left off.
  -h, --help        show this text.
EOF
}

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT=""
VENV_WANTED=1
WHEELHOUSE=""
EXTRAS=""
ACTION=install

while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT="${2:?--root needs a directory}"; shift 2 ;;
        --root=*) ROOT="${1#--root=}"; shift ;;
        --no-venv) VENV_WANTED=0; shift ;;
        --wheelhouse) WHEELHOUSE="${2:?--wheelhouse needs a directory}"; shift 2 ;;
        --wheelhouse=*) WHEELHOUSE="${1#--wheelhouse=}"; shift ;;
        --extras) EXTRAS="${2:?--extras needs a list}"; shift 2 ;;
        --extras=*) EXTRAS="${1#--extras=}"; shift ;;
        --uninstall) ACTION=uninstall; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "error: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [ -n "$ROOT" ]; then
    case "$ROOT" in /*) ;; *) ROOT="$(pwd)/$ROOT" ;; esac
    ROOT="${ROOT%/}"
    [ "$ROOT" != "" ] || { echo "error: --root / is the real system; leave --root out" >&2; exit 2; }
    mkdir -p "$ROOT"
elif [ "$(id -u)" != 0 ]; then
    echo "error: installing into the system needs root: sudo $0 $*" >&2
    exit 2
fi
if [ -n "$WHEELHOUSE" ] && [ ! -d "$WHEELHOUSE" ]; then
    echo "error: --wheelhouse $WHEELHOUSE is not a directory" >&2
    exit 2
fi

USER_NAME=inspector
PREFIX=/opt/battery-inspector
VENV=$PREFIX/venv
DATA=/var/lib/inspector
ETC=/etc/inspector
UNIT_DIR=/etc/systemd/system
SYSUSERS=/usr/lib/sysusers.d/inspector.conf
TMPFILES=/usr/lib/tmpfiles.d/inspector.conf
UNITS=(inspector-engine.service inspector.service inspector-explainer.service inspector-web.service)
# one instance per camera (inspector@NAME.service): installed, enabled per instance by the operator
TEMPLATES=(inspector-engine@.service inspector@.service inspector-explainer@.service
    inspector-web@.service)
AS_ROOT=0
[ "$(id -u)" = 0 ] && AS_ROOT=1
CHANGED=0

say() { printf '%s\n' "$*"; }
changed() { CHANGED=$((CHANGED + 1)); say "  $*"; }

# Numeric id of NAME in the target's passwd/group file (the host's files describe another system
# when --root is given).
id_in_root() {  # FILE NAME
    [ -f "$ROOT/etc/$1" ] || return 0
    awk -F: -v n="$2" '$1 == n { print $3 }' "$ROOT/etc/$1"
}

owner_args() {  # USER GROUP -> install(1) ownership options, numeric, only when running as root
    [ "$AS_ROOT" = 1 ] || return 0
    local uid gid
    uid="$(id_in_root passwd "$1")"
    gid="$(id_in_root group "$2")"
    [ -n "$uid" ] && printf -- '-o\n%s\n' "$uid"
    [ -n "$gid" ] && printf -- '-g\n%s\n' "$gid"
    return 0
}

install_file() {  # MODE SRC DEST [USER GROUP]: copy only when content, mode or owner differ
    local mode="$1" src="$2" dest="$ROOT$3" before="" after
    local -a own=()
    [ $# -ge 5 ] && mapfile -t own < <(owner_args "$4" "$5")
    [ -e "$dest" ] && before="$(stat -c '%a %u %g %Y' "$dest")-$(sha256sum <"$dest")"
    install -D -C -m "$mode" "${own[@]}" "$src" "$dest"
    after="$(stat -c '%a %u %g %Y' "$dest")-$(sha256sum <"$dest")"
    [ "$before" = "$after" ] || changed "installed $3"
}

install_dir() {  # MODE DIR [USER GROUP]: create or fix mode/owner without touching contents
    local mode="$1" dir="$ROOT$2" before="" after
    local -a own=()
    [ $# -ge 4 ] && mapfile -t own < <(owner_args "$3" "$4")
    [ -d "$dir" ] && before="$(stat -c '%a %u %g' "$dir")"
    install -d -m "$mode" "${own[@]}" "$dir"
    after="$(stat -c '%a %u %g' "$dir")"
    [ "$before" = "$after" ] || changed "directory $2"
}

install_if_absent() {  # MODE SRC DEST USER GROUP: the operator's file wins once it exists
    if [ -e "$ROOT$3" ]; then
        say "  kept $3 (already present)"
    else
        install_file "$@"
    fi
}

link_if_needed() {  # TARGET LINK
    local link="$ROOT$2"
    [ "$(readlink "$link" 2>/dev/null || true)" = "$1" ] && return 0
    mkdir -p "$(dirname "$link")"
    ln -sfn "$1" "$link"
    changed "enabled $(basename "$2")"
}

create_user() {
    install_file 0644 "$SRC/systemd/inspector.sysusers.conf" "$SYSUSERS"
    if [ -n "$(id_in_root passwd "$USER_NAME")" ]; then
        return 0
    fi
    if command -v systemd-sysusers >/dev/null 2>&1; then
        mkdir -p "$ROOT/etc"
        local -a sysusers=(systemd-sysusers)
        [ -z "$ROOT" ] || sysusers+=(--root="$ROOT")
        local out
        out="$("${sysusers[@]}" inspector.conf 2>&1)" || { printf '%s\n' "$out" >&2; exit 1; }
    elif [ -z "$ROOT" ]; then
        useradd --system --user-group --home-dir "$DATA" --shell /usr/sbin/nologin \
            --comment "battery-inspector daemon" "$USER_NAME"
    else
        say "  warning: systemd-sysusers is missing; user $USER_NAME not created in $ROOT"
        return 0
    fi
    changed "created system user $USER_NAME"
}

create_data_dirs() {
    install_file 0644 "$SRC/systemd/inspector.tmpfiles.conf" "$TMPFILES"
    local path
    # The same directories, modes and owners as the tmpfiles.d file, which also recreates them
    # at boot should the data disk be replaced.
    while read -r kind path mode user group _; do
        [ "$kind" = d ] || continue
        install_dir "$mode" "$path" "$user" "$group"
    done < <(grep -v '^#' "$SRC/systemd/inspector.tmpfiles.conf")
}

source_stamp() {  # a hash of everything pip would install, to skip identical reinstalls
    # Every file of the packages (templates and stylesheets too), bytecode caches aside.
    (cd "$SRC" && find setup.cfg pyproject.toml inspector models export -type f \
        -not -path '*/__pycache__/*' -not -name '*.pyc' -print0 \
        | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum)
    printf 'extras=%s\n' "$EXTRAS"
}

create_venv() {
    if [ "$VENV_WANTED" = 0 ]; then
        say "  skipped the virtual environment (--no-venv)"
        return 0
    fi
    local venv="$ROOT$VENV" stamp_file="$ROOT$VENV/.installed-from" stamp
    stamp="$(source_stamp)"
    if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp" ]; then
        return 0
    fi
    if [ ! -x "$venv/bin/python" ]; then
        python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
            echo "error: battery-inspector needs Python 3.11 or later as python3" >&2
            exit 1
        }
        python3 -m venv "$venv"
        changed "created venv $VENV"
    fi
    local target="$SRC"
    [ -n "$EXTRAS" ] && target="$SRC[$EXTRAS]"
    local -a pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check
        --no-cache-dir)
    [ -n "$WHEELHOUSE" ] && pip+=(--no-index --find-links "$WHEELHOUSE")
    "${pip[@]}" "$target"
    printf '%s\n' "$stamp" >"$stamp_file"
    changed "installed battery-inspector into $VENV"
}

install_units() {
    local unit
    for unit in "${UNITS[@]}" "${TEMPLATES[@]}"; do
        install_file 0644 "$SRC/systemd/$unit" "$UNIT_DIR/$unit"
    done
    if [ -n "$ROOT" ]; then
        # What `systemctl enable` does, from each unit's [Install] WantedBy=.
        local wanted_by
        for unit in "${UNITS[@]}"; do
            for wanted_by in $(sed -n 's/^WantedBy=//p' "$SRC/systemd/$unit"); do
                link_if_needed "$UNIT_DIR/$unit" "$UNIT_DIR/$wanted_by.wants/$unit"
            done
        done
    else
        systemctl daemon-reload
        local -a disabled=()
        for unit in "${UNITS[@]}"; do
            systemctl is-enabled --quiet "$unit" 2>/dev/null || disabled+=("$unit")
        done
        if [ ${#disabled[@]} -gt 0 ]; then
            systemctl enable --quiet "${disabled[@]}"
            changed "enabled ${disabled[*]}"
        fi
    fi
}

do_install() {
    say "installing battery-inspector from $SRC into ${ROOT:-/}"
    [ -f "$SRC/systemd/inspector.example.yaml" ] || {
        echo "error: $SRC/systemd/inspector.example.yaml is missing" >&2
        exit 1
    }
    create_user
    create_data_dirs
    install_dir 0750 "$ETC" root "$USER_NAME"
    install_if_absent 0640 "$SRC/systemd/inspector.example.yaml" "$ETC/inspector.yaml" \
        root "$USER_NAME"
    install_if_absent 0640 "$SRC/systemd/inspector.env.example" "$ETC/inspector.env" \
        root "$USER_NAME"
    install_dir 0755 "$PREFIX"
    install_file 0644 "$SRC/systemd/inspector.example.yaml" "$PREFIX/examples/inspector.yaml"
    install_file 0644 "$SRC/systemd/inspector.env.example" "$PREFIX/examples/inspector.env"
    install_file 0644 "$SRC/systemd/mosquitto.example.conf" "$PREFIX/examples/mosquitto.conf"
    install_file 0644 "$SRC/systemd/mosquitto.example.acl" "$PREFIX/examples/mosquitto.acl"
    local doc
    for doc in "$SRC"/docs/*.md; do
        if [ -e "$doc" ]; then
            install_file 0644 "$doc" "$PREFIX/docs/$(basename "$doc")"
        fi
    done
    create_venv
    install_units
    if [ "$CHANGED" = 0 ]; then
        say "nothing changed: already installed"
    elif [ -z "$ROOT" ] && systemctl is-active --quiet "${UNITS[@]:1}" 2>/dev/null; then
        say "done ($CHANGED changes). Running units keep the old version until:" \
            "systemctl restart inspector inspector-explainer inspector-web"
    else
        say "done ($CHANGED changes). Next: edit $ETC/inspector.yaml and $ETC/inspector.env," \
            "put the bundle under $DATA/bundles/, then: systemctl start inspector"
    fi
}

do_uninstall() {
    say "uninstalling battery-inspector from ${ROOT:-/} (keeping $DATA, $ETC and the user)"
    local unit link path
    if [ -z "$ROOT" ]; then
        systemctl disable --now --quiet "${UNITS[@]}" 2>/dev/null || true
    fi
    for unit in "${UNITS[@]}"; do
        for link in "$ROOT$UNIT_DIR"/*.wants/"$unit"; do
            if [ -L "$link" ]; then rm -f "$link"; changed "disabled $unit"; fi
        done
        if [ -e "$ROOT$UNIT_DIR/$unit" ]; then
            rm -f "$ROOT$UNIT_DIR/$unit"
            changed "removed $UNIT_DIR/$unit"
        fi
    done
    if [ -z "$ROOT" ]; then
        systemctl stop --quiet 'inspector@*.service' 'inspector-*@*.service' 2>/dev/null || true
    fi
    for unit in "${TEMPLATES[@]}"; do
        for link in "$ROOT$UNIT_DIR"/*.wants/"${unit%@.service}"@*.service; do
            if [ -L "$link" ]; then rm -f "$link"; changed "disabled $(basename "$link")"; fi
        done
        if [ -e "$ROOT$UNIT_DIR/$unit" ]; then
            rm -f "$ROOT$UNIT_DIR/$unit"
            changed "removed $UNIT_DIR/$unit"
        fi
    done
    if [ -z "$ROOT" ]; then systemctl daemon-reload; fi
    for path in "$SYSUSERS" "$TMPFILES"; do
        if [ -e "$ROOT$path" ]; then rm -f "$ROOT$path"; changed "removed $path"; fi
    done
    if [ -e "$ROOT$PREFIX" ]; then rm -rf -- "$ROOT$PREFIX"; changed "removed $PREFIX"; fi
    [ "$CHANGED" != 0 ] || say "nothing to remove: not installed"
    say "kept $DATA (results, rejects, bundles), $ETC (configuration) and user $USER_NAME"
}

if [ "$ACTION" = install ]; then do_install; else do_uninstall; fi
