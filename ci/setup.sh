#!/usr/bin/env bash
# Installs everything Quest needs on a fresh Debian 12 machine. Idempotent: re-running it
# only checks. Needs root (or sudo) for apt.
set -euo pipefail
cd "$(dirname "$0")/.."

HERMIT_NIGHTLY=nightly-2025-03-15
APT_PACKAGES=(bochs bochsbios vgabios qemu-system-x86 grub-pc-bin grub-common
              grub-efi-amd64-bin xorriso mtools curl)

step() { printf '\033[1;32m%12s\033[0m %s\n' "$1" "$2"; }

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    step Installing "${missing[*]}"
    SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    step Checked "Debian packages (${APT_PACKAGES[*]})"
fi

if ! command -v rustup >/dev/null; then
    echo "error: rustup is not installed; install it from https://rustup.rs and re-run" >&2
    exit 1
fi
# The pinned stable toolchain, its components and targets come from rust-toolchain.toml.
step Installing "Rust toolchain from rust-toolchain.toml"
rustup show active-toolchain >/dev/null 2>&1 || rustup toolchain install
rustup toolchain install "$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)" \
    --profile minimal -c rustfmt -c clippy -c rust-src -c llvm-tools \
    -t x86_64-unknown-none >/dev/null 2>&1
# Hermit's kernel and std applications build with this nightly (-Zbuild-std).
step Installing "$HERMIT_NIGHTLY (Hermit unikernels)"
rustup toolchain install "$HERMIT_NIGHTLY" --profile minimal -c rust-src -c llvm-tools >/dev/null 2>&1
step Finished "setup"
