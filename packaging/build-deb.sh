#!/bin/sh
# Build the Debian package of auoms-py with dpkg-deb (no debhelper): `make deb` (runs `make dist` first).
#
#   packaging/build-deb.sh [REVISION]      -> dist/auoms-py_<version>-<REVISION>_<arch>.deb ($DEB_OUT/ if set)
#
# The agent goes into its own virtual environment, /opt/auoms-py, made with Debian's python3 (/usr/bin/python3:
# the package depends on python3 3.11) from the wheel in dist/ with the [systemd] extra (systemd-python: needs
# libsystemd-dev, gcc and python3-dev to build, pip's network or cache for the dependencies). The venv is made
# under a staging directory and its scripts are pointed at /opt/auoms-py afterwards.
#
# Layout: /opt/auoms-py (venv), /usr/bin/auoms-py -> /opt/auoms-py/bin/auoms-py, /etc/auoms-py/{auoms.yaml,
# filters.yaml,rules.d/} and /etc/audit/plugins.d/auoms-py.conf (conffiles: an edit survives upgrades),
# /lib/systemd/system/auoms-py.service, /usr/share/auoms-py/rules (optional rule sets), /usr/share/doc/auoms-py.
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
REVISION=${1:-1}
PYTHON=${DEB_PYTHON:-/usr/bin/python3}
VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$REPO/auoms_py/__init__.py")
ARCH=$(dpkg --print-architecture)
WHEEL="$REPO/dist/auoms_py-$VERSION-py3-none-any.whl"
OUT=${DEB_OUT:-$REPO/dist}
DEB="$OUT/auoms-py_${VERSION}-${REVISION}_${ARCH}.deb"

[ -f "$WHEEL" ] || { echo "build-deb: $WHEEL is missing: run make dist first" >&2; exit 1; }
case "$($PYTHON -c 'import sys; print("%d.%d" % sys.version_info[:2])')" in
    3.11) ;;
    *) echo "build-deb: $PYTHON is not Python 3.11 (the package depends on Debian 12's python3)" >&2; exit 1 ;;
esac

STAGE=$(mktemp -d /tmp/auoms-py-deb.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT
ROOT="$STAGE/root"
VENV="$ROOT/opt/auoms-py"

# ---- the virtual environment ----
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-warn-script-location "$WHEEL[systemd]"
"$VENV/bin/python" -m pip uninstall --quiet --disable-pip-version-check -y pip setuptools
# made under $ROOT: the scripts (shebangs, activate) must name /opt/auoms-py
grep -rlI "$ROOT" "$VENV" | while IFS= read -r file; do sed -i "s|$ROOT||g" "$file"; done
find "$VENV" -name __pycache__ -type d -prune -exec rm -rf {} +
rm -f "$VENV/bin/pip" "$VENV/bin/pip3" "$VENV/bin/pip3.11"

# ---- configuration (conffiles), unit, docs ----
install -d -m 0755 "$ROOT/etc/auoms-py/rules.d" "$ROOT/etc/audit/plugins.d" "$ROOT/usr/bin" \
    "$ROOT/lib/systemd/system" "$ROOT/usr/share/auoms-py/rules" "$ROOT/usr/share/doc/auoms-py" "$ROOT/DEBIAN"
install -m 0644 "$REPO/packaging/conf/auoms.yaml" "$ROOT/etc/auoms-py/auoms.yaml"
install -m 0644 "$REPO/conf/filters.yaml" "$ROOT/etc/auoms-py/filters.yaml"
install -m 0644 "$REPO"/rules/*.rules "$ROOT/etc/auoms-py/rules.d/"
install -m 0640 "$REPO/packaging/conf/auoms-py.conf" "$ROOT/etc/audit/plugins.d/auoms-py.conf"
install -m 0644 "$REPO/systemd/auoms-py.service" "$ROOT/lib/systemd/system/auoms-py.service"
cp -r "$REPO/rules/optional" "$ROOT/usr/share/auoms-py/rules/"
install -m 0644 "$REPO/README.md" "$REPO"/docs/*.md "$ROOT/usr/share/doc/auoms-py/"
ln -s /opt/auoms-py/bin/auoms-py "$ROOT/usr/bin/auoms-py"

# ---- control files ----
(cd "$ROOT" && find etc -type f | sed 's|^|/|' | sort) > "$ROOT/DEBIAN/conffiles"
for script in postinst prerm postrm; do
    install -m 0755 "$REPO/packaging/debian/$script" "$ROOT/DEBIAN/$script"
done
SIZE=$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
sed -e "s/@VERSION@/$VERSION-$REVISION/" -e "s/@ARCH@/$ARCH/" -e "s/@SIZE@/$SIZE/" \
    "$REPO/packaging/debian/control.in" > "$ROOT/DEBIAN/control"
(cd "$ROOT" && find . -path ./DEBIAN -prune -o -type f -print | sed 's|^\./||' | sort | xargs md5sum) \
    > "$ROOT/DEBIAN/md5sums"

dpkg-deb --root-owner-group -Zxz --build "$ROOT" "$DEB" >/dev/null
echo "$DEB"
