#!/bin/sh
# Checks that a shared library exports the chimera_* functions of include/chimera.h and nothing
# else. Usage: check_exports.sh LIBRARY HEADER
lib="$1"
header="$2"
symbols=$(nm -D --defined-only "$lib") || { echo "nm failed on $lib"; exit 2; }
names=$(echo "$symbols" | awk '{print $3}' | sort)
others=$(echo "$names" | grep -v '^chimera_')
if [ -n "$others" ]; then
  echo "exported besides chimera_*:"; echo "$others" | head -20; exit 1
fi
declared=$(grep -o 'chimera_[a-z_]*(' "$header" | grep -v '_fn(' | tr -d '(' | sort -u)
missing=$(for f in $declared; do echo "$names" | grep -qx "$f" || echo "$f"; done)
if [ -n "$missing" ]; then
  echo "declared in $header but not exported:"; echo "$missing"; exit 1
fi
echo "$(echo "$names" | wc -l) chimera_* functions exported, nothing else"
