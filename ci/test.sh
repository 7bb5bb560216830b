#!/usr/bin/env bash
# Every check CI runs: formatting, lints (host and bare-metal), unit, golden and boot
# tests (Bochs), docs. Run ci/setup.sh first on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\033[1;32m%12s\033[0m %s\n' "$1" "$2"; }
BARE=(--target x86_64-unknown-none)
# Bare-metal workspace crates (built for x86_64-unknown-none only).
BARE_CRATES=(quest-monitor quest-channel)
[ -f unikernels/quest-rt/Cargo.toml ] && BARE_CRATES+=(quest-rt)

step Checking "formatting"
cargo fmt --all --check
for app in unikernels/apps/*/Cargo.toml; do
    [ -f "$app" ] && cargo fmt --manifest-path "$app" --check
done

step Linting "host crates"
cargo clippy --all-targets -- -D warnings
step Linting "bare-metal crates"
for c in "${BARE_CRATES[@]}"; do
    cargo clippy -p "$c" "${BARE[@]}" -- -D warnings
done
# Applications are independent packages: bare ones (quest-rt) are linted for the bare-metal
# target; std ones (Hermit) and helper libraries are plain Rust and are linted on the host.
for app in unikernels/apps/*/Cargo.toml; do
    [ -f "$app" ] || continue
    if grep -q 'quest-rt' "$app"; then
        cargo clippy --manifest-path "$app" "${BARE[@]}" --target-dir images/target/lint -- -D warnings
    else
        cargo clippy --manifest-path "$app" --all-targets --target-dir images/target/lint-host -- -D warnings
    fi
done

step Testing "unit, golden and boot tests"
QUEST_REQUIRE_BOOT=1 cargo test --all-targets
step Testing "application helper libraries"
for app in unikernels/apps/*/Cargo.toml; do
    [ -f "$(dirname "$app")/src/lib.rs" ] || continue
    cargo test --manifest-path "$app" --target-dir images/target/lint-host
done

# The README's main command, exactly as written there (taken from README.md, so the two
# cannot drift apart): it must build hello.toml, boot it and exit 0.
step Running "the README's main command"
main_command=$(awk '/^Run the main job/ { found = 1 } found && /^```sh/ { getline; print; exit }' README.md)
if [ -z "$main_command" ]; then
    echo "error: README.md has no main command (a \`\`\`sh block after 'Run the main job')" >&2
    exit 1
fi
echo "+ $main_command"
bash -c "$main_command"

step Documenting "host crates"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --quiet
step Finished "all checks passed"
