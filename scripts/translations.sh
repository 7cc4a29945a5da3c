#!/usr/bin/env bash
# The translations of what WhatsApp and voice users are told: gettext catalogs, with Babel.
#
#   ./scripts/translations.sh              extract every N_("…") and ngettext(…) message of the
#                                          backend into src/blueprint_engine/locale/messages.pot, and merge
#                                          it into each catalog (new messages empty, changed ones
#                                          fuzzy, gone ones removed)
#   ./scripts/translations.sh init LOCALE  start the catalog of a new language (e.g. ta, mr)
#
# Then translate the empty and fuzzy entries of src/blueprint_engine/locale/<locale>/LC_MESSAGES/
# messages.po; tests/test_translations.py fails until each is translated with the same {values}
# as its English. There is nothing to compile: a process compiles the .po files when it first
# needs them (src/blueprint_engine/services/i18n.py), so what is in the tree is what runs.
source "$(dirname "$0")/lib.sh"
ensure_venv dev
DIR=src/blueprint_engine/locale
if [ "${1:-}" = init ]; then
    [ -n "${2:-}" ] || die "usage: $0 init LOCALE"
    pybabel init --no-wrap -D messages -i "$DIR/messages.pot" -d "$DIR" -l "$2"
    exit 0
fi
pybabel extract -F pyproject.toml --no-location --sort-output --no-wrap --omit-header \
    -o "$DIR/messages.pot" src/blueprint_engine
pybabel update --no-wrap --ignore-obsolete --ignore-pot-creation-date -D messages -i "$DIR/messages.pot" -d "$DIR"
