# shellcheck shell=bash
#
# Helpers shared by scripts/run and scripts/test: messages and the Rust
# toolchain. Source it; it defines functions only and changes no options.

# Prints a progress message to stderr.
say() {
    printf '%s\n' "$*" >&2
}

# Prints an error to stderr and returns 1, so callers write `die ... ; exit`
# or rely on `set -e` with `die ...` as the last command of a failing branch.
die() {
    printf 'error: %s\n' "$*" >&2
    return 1
}

# True when running as root.
is_root() {
    [[ ${EUID:-$(id -u)} -eq 0 ]]
}

# Makes sure `cargo` is on PATH. Rustup installs into ~/.cargo/bin, which a
# non-login shell (CI, cron, sudo) often does not have on PATH.
ensure_cargo() {
    command -v cargo >/dev/null 2>&1 && return 0
    local cargo_bin="${CARGO_HOME:-${HOME:-/root}/.cargo}/bin"
    if [[ -x $cargo_bin/cargo ]]; then
        PATH="$cargo_bin:$PATH"
        export PATH
        return 0
    fi
    die "cargo not found on PATH nor in $cargo_bin; install Rust with rustup (https://rustup.rs) and try again"
}

# Makes sure the rustfmt and clippy components of the active toolchain are
# installed. Run it from the checkout root so a rust-toolchain file applies.
ensure_rust_components() {
    ensure_cargo || return 1
    local component
    for component in rustfmt clippy; do
        local subcommand=${component/rustfmt/fmt}
        cargo "$subcommand" --version >/dev/null 2>&1 && continue
        command -v rustup >/dev/null 2>&1 ||
            { die "cargo $subcommand is missing and rustup is not available to add the $component component"; return 1; }
        say "installing the $component component with rustup"
        rustup component add "$component" </dev/null || { die "rustup component add $component failed"; return 1; }
    done
}
