"""What WhatsApp and voice users are told when something goes wrong, in plain words.

A person never sees a regex, a validator message, a template or an exception: the reply says
what happened in words, and the technical detail stays where operators look: the server log.
"""

from __future__ import annotations

from backend.app.errors import AppError, LLMBadOutput, LLMNotConfigured, LLMTimeout, LLMUnavailable

_LATER = "please try again in a few minutes"


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
