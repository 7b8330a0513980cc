#!/bin/sh
# Copies the workspace's manifests into OUT with an empty stand-in for every
# file that can be the root of a Cargo target (src/lib.rs, src/main.rs,
# src/bin/*, tests/*, benches/*, examples/*, build.rs).
#
# Used by Dockerfile.server and Dockerfile.client: building the skeleton
# compiles every dependency, and because OUT's content changes only when a
# Cargo.toml or Cargo.lock changes, Docker reuses that (slow) layer across
# source edits. Members are found with `find`, so a member that does not exist
# yet, or one added later, needs no change here.
#
# Usage: sh deploy/cargo-skeleton.sh OUT   (run at the workspace root)
set -eu

out=${1:?usage: cargo-skeleton.sh OUT}
mkdir -p "$out"

cp Cargo.toml Cargo.lock "$out/"
for f in .cargo rust-toolchain rust-toolchain.toml; do
    if [ -e "$f" ]; then cp -R "$f" "$out/"; fi
done

# Every package manifest below the root (the root one is copied above).
find . -path ./target -prune -o -path ./.git -prune -o -path '*/node_modules' -prune \
    -o -name Cargo.toml -print | while read -r manifest; do
    dir=$(dirname "$manifest")
    mkdir -p "$out/$dir"
    cp "$manifest" "$out/$manifest"
done

# Empty target roots, in every package directory (the root included).
find . -path ./target -prune -o -path ./.git -prune -o -path '*/node_modules' -prune \
    -o -name Cargo.toml -print | while read -r manifest; do
    dir=$(dirname "$manifest")
    find "$dir" -path "$dir/target" -prune -o -type f -name '*.rs' \( \
        -path "$dir/src/lib.rs" -o -path "$dir/src/main.rs" -o -path "$dir/src/bin/*" \
        -o -path "$dir/tests/*" -o -path "$dir/benches/*" -o -path "$dir/examples/*" \
        -o -path "$dir/build.rs" \) -print | while read -r root; do
        mkdir -p "$out/$(dirname "$root")"
        case "$root" in
            */src/lib.rs) : > "$out/$root" ;;
            *) echo 'fn main() {}' > "$out/$root" ;;
        esac
    done
done
