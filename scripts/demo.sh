#!/usr/bin/env bash
# The main job: install, prepare the database, and run a real blueprint end to end with live
# progress: a Razorpay payment.captured webhook payload -> WhatsApp receipt (sandboxed unless
# TWILIO_* credentials are set). `wf run` picks the database as `wf db status` would, says which
# (starting the embedded server for the run when that is the one), and exits 3 if it is out of
# reach; a separate `wf db status` first would cost another second or two of Python start-up.
source "$(dirname "$0")/lib.sh"
ensure_venv dev
say "running examples/payment_receipt on the embedded runner"
exec wf run examples/payment_receipt/blueprint.json --payload examples/payment_receipt/payload.json "$@"
