#!/usr/bin/env bash
# install-deps.sh — installs what the tests need on a Debian machine, only when it is
# missing: the Debian packages of the peers and the lab (tshark, tcpdump, tcpreplay,
# nftables, iproute2, util-linux's unshare, python3-venv, …) and Rust through rustup.
# Called by tools/test.sh (the README's test command) and by .ci/run. Needs root or a
# password-less sudo when something is missing; says exactly what is missing otherwise.
#
# Usage: tools/install-deps.sh [--force]    (--force runs apt-get even when all is there)
set -euo pipefail

# command-to-check:package pairs. A package is installed when its command is missing.
NEEDS=(
    ip:iproute2
    unshare:util-linux
    nft:nftables
    tshark:tshark
    tcpdump:tcpdump
    tcpreplay:tcpreplay
    python3:python3
    pip3:python3-pip
    curl:curl
    cc:build-essential
    git:git
    tmux:tmux
    candump:can-utils
    log2asc:can-utils
    qemu-system-x86_64:qemu-system-x86
    busybox:busybox-static
    depmod:kmod
    cpio:cpio
    chromium:chromium
)

missing=()
for pair in "${NEEDS[@]}"; do
    cmd=${pair%%:*} pkg=${pair#*:}
    # busybox-static installs /bin/busybox; PATH may lack /sbin for depmod.
    if ! command -v "$cmd" >/dev/null 2>&1 && [[ ! -x /sbin/$cmd && ! -x /usr/sbin/$cmd ]]; then
        [[ " ${missing[*]} " == *" $pkg "* ]] || missing+=("$pkg")
    fi
done
# python3 -m venv needs python3-venv (ensurepip) on Debian.
if command -v python3 >/dev/null && ! python3 -c 'import ensurepip' 2>/dev/null; then
    missing+=(python3-venv)
fi

if [[ ${#missing[@]} -gt 0 || ${1:-} == --force ]]; then
    SUDO=()
    if [[ $(id -u) -ne 0 ]]; then
        if sudo -n true 2>/dev/null; then
            SUDO=(sudo -n)
        else
            echo "install-deps: missing ${missing[*]}; run as root or with password-less sudo, or: apt-get install ${missing[*]}" >&2
            exit 1
        fi
    fi
    echo "install-deps: installing ${missing[*]:-(forced)}" >&2
    export DEBIAN_FRONTEND=noninteractive
    # tshark asks whether non-root users may capture; answer it before it asks.
    echo "wireshark-common wireshark-common/install-setuid boolean false" |
        "${SUDO[@]}" debconf-set-selections
    "${SUDO[@]}" apt-get update -q </dev/null >&2
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        ca-certificates python3-venv "${missing[@]}" </dev/null >&2
fi

# Rust via rustup (Debian's rustc is older than the crate's rust-version).
if ! command -v cargo >/dev/null && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH=$HOME/.cargo/bin:$PATH
fi
if ! command -v cargo >/dev/null; then
    echo "install-deps: installing Rust with rustup" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
        sh -s -- -y --profile minimal --no-modify-path </dev/null >&2
fi
