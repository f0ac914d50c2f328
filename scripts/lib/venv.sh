# pinned_venv VENV "pkg==1.2 other==3.4": makes (or remakes) the Python venv VENV holding exactly
# those pinned PyPI packages, unless it already does (its .pins file says so). Source this file.
pinned_venv() {
  local venv=$1 want=$2
  if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.pins" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  python3 -m venv "$venv"
  # shellcheck disable=SC2086 # the pins are separate words
  "$venv/bin/pip" install --quiet --disable-pip-version-check $want
  echo "$want" > "$venv/.pins"
}
