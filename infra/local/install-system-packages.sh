#!/usr/bin/env bash
# Debian packages some features need. Optional: without apt (or root) the platform still runs on the
# built-in digits dataset, and this prints what is missing.
#   dataset-fashion-mnist  Fashion-MNIST's original idx files (`genp data import fashion-mnist`)
#   chromium               the browser the Prefect UI test drives (through Playwright)
set -u
packages=(dataset-fashion-mnist chromium)
missing=()
for package in "${packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "note: apt-get not found; skipping Debian packages: ${missing[*]}" >&2
  exit 0
fi
sudo=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo="sudo"
echo "installing Debian packages: ${missing[*]}"
if ! { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"; } >/dev/null; then
  echo "warning: could not install ${missing[*]}; Fashion-MNIST needs FMNIST_DIR or the package" >&2
fi
exit 0
