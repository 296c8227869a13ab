#!/usr/bin/env bash
# Sourced by .ci/run: make `node` the version the README and every package.json "engines" require
# (>= 20.16: process.getBuiltinModule, which the browser-safe packages use to reach node:fs lazily).
# When node is missing or older, Node $CNX_NODE_VERSION is installed from the npm registry package
# node-linux-<arch> (the official binary; the registry is reachable where the build downloads nothing
# else), into ~/.cache, and put first on PATH. npm comes from Debian (`npm`) when there is none.
# Override the minimum with CNX_NODE_MIN (a test of this script), the installed version with CNX_NODE_VERSION.

cnx_node_min="${CNX_NODE_MIN:-$(node -e 'process.stdout.write(require("./package.json").engines.node.replace(">=", ""))' 2>/dev/null \
  || sed -n 's/.*"node": *">=\([0-9.]*\)".*/\1/p' package.json | head -1)}"
cnx_node_version="${CNX_NODE_VERSION:-20.20.2}"

cnx_node_ok() {
  command -v node >/dev/null 2>&1 && node -e "
    const have = process.versions.node.split('.').map(Number), want = '$cnx_node_min'.split('.').map(Number);
    for (let i = 0; i < 3; i++) { if ((have[i] ?? 0) !== (want[i] ?? 0)) process.exit((have[i] ?? 0) > (want[i] ?? 0) ? 0 : 1); }
  "
}

if ! cnx_node_ok; then
  echo "[ci] Node >= $cnx_node_min is required (README, package.json engines); found $(node --version 2>/dev/null || echo 'no node'): installing Node $cnx_node_version"
  case "$(uname -m)" in
    x86_64) cnx_node_arch=x64 ;;
    aarch64|arm64) cnx_node_arch=arm64 ;;
    *) echo "[ci] no Node binary package for $(uname -m); install Node >= $cnx_node_min by hand" >&2; exit 1 ;;
  esac
  if ! command -v npm >/dev/null 2>&1; then
    ${SUDO:-} apt-get install -y --no-install-recommends nodejs npm
  fi
  cnx_node_prefix="${CNX_NODE_PREFIX:-$HOME/.cache/cnx-node-$cnx_node_version}"
  cnx_node_bin="$cnx_node_prefix/node_modules/node-linux-$cnx_node_arch/bin"
  if [ ! -x "$cnx_node_bin/node" ]; then
    mkdir -p "$cnx_node_prefix"
    npm install --no-save --no-audit --no-fund --prefix "$cnx_node_prefix" "node-linux-$cnx_node_arch@$cnx_node_version"
  fi
  export PATH="$cnx_node_bin:$PATH"
  if ! cnx_node_ok; then
    echo "[ci] still no Node >= $cnx_node_min after installing $cnx_node_version (node: $(command -v node), $(node --version))" >&2
    exit 1
  fi
fi
echo "[ci] node $(node --version) ($(command -v node)), npm $(npm --version)"
