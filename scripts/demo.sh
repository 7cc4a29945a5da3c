#!/usr/bin/env bash
# The main job: install, prepare the database, and run a real blueprint end to end with live
# progress: a Razorpay payment.captured webhook payload -> WhatsApp receipt (sandboxed unless
# TWILIO_* credentials are set).
source "$(dirname "$0")/lib.sh"
ensure_venv dev
ensure_database
say "running examples/payment_receipt on the embedded runner"
exec wf run examples/payment_receipt/blueprint.json --payload examples/payment_receipt/payload.json "$@"
