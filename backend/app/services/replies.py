"""What WhatsApp and voice users are told when something goes wrong, in plain words.

A person never sees a regex, a validator message, a template or an exception: the reply says
what happened in words, and the technical detail stays where operators look — the run's error
and logs (``GET /runs/{id}``) and the server log. Reasons are chosen by the machine-readable
error ``code``, never copied from the error's ``message``.
"""

from __future__ import annotations

import json

from backend.app.errors import AppError, LLMBadOutput, LLMNotConfigured, LLMTimeout, LLMUnavailable

_LATER = "please try again in a few minutes"

#: A failed step's error ``code`` -> why it failed, said to the user.
_BECAUSE: dict[str, str] = {
    "razorpay_bad_request": "Razorpay turned the request down",
    "razorpay_server_error": f"Razorpay is having trouble right now; {_LATER}",
    "twilio_error": "Twilio turned the WhatsApp message down",
    "network_error": f"the service it needs could not be reached; {_LATER}",
    "dns_error": f"the service it needs could not be reached; {_LATER}",
    "timeout": f"the service it needs took too long to answer; {_LATER}",
    "http_status": "the service it needs turned the request down",
    "destination_blocked": "the address it needs is not allowed",
    "invalid_params": "some of the details are not in a form the service accepts",
    "expression_error": "the workflow could not use those details",
    "engine_unavailable": f"I couldn't start it; {_LATER}",
}
_SOMETHING = "something went wrong on our side"


def failed(code: str | None) -> str:
    """The answer when an action ran and failed with the error ``code``."""
    return f"Sorry, that didn't work: {_BECAUSE.get(code or '', _SOMETHING)}."


def failed_template(code_expr: str) -> str:
    """:func:`failed` as a Jinja template over ``code_expr`` (e.g.
    ``steps.act.output.error.code``), for answers a run renders itself."""
    reasons = json.dumps(_BECAUSE, ensure_ascii=False)
    return (
        f"Sorry, that didn't work: {{{{ {reasons}.get({code_expr}, {json.dumps(_SOMETHING)}) }}}}."
    )


def apology(exc: AppError) -> str:
    """The answer when a message could not be handled at all: the model failed to read it,
    no model is set up, the audio could not be used."""
    if isinstance(exc, LLMBadOutput):
        return "Sorry, I couldn't make sense of that. Could you say it again, in other words?"
    if isinstance(exc, (LLMTimeout, LLMUnavailable)):
        return f"Sorry, I can't read messages right now; {_LATER}."
    if isinstance(exc, LLMNotConfigured):
        return "Sorry, I can't read messages yet: this assistant is not set up."
    return "Sorry, I couldn't handle that message."
