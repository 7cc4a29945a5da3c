"""Razorpay payments through the official ``razorpay`` SDK.

Amounts are integers in the currency's smallest unit (paise for INR), as Razorpay requires.
Idempotency: refunds send ``X-Refund-Idempotency`` (Razorpay: 10+ chars of ``[A-Za-z0-9_-]``;
https://razorpay.com/docs/api/refunds/normal-refunds-idempotent); payment links get a
``reference_id`` derived from the step's key when none is given (Razorpay rejects a second link
with the same ``reference_id``). Invoices and fetches have no idempotency mechanism.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any, Literal

import razorpay
import requests
from pydantic import BaseModel, ConfigDict, EmailStr, Field, SecretStr
from pydantic_settings import SettingsConfigDict
from razorpay.errors import BadRequestError, GatewayError, ServerError

from blueprint_engine.config import ToolSettings
from blueprint_engine.integrations.base import (
    N_,
    BaseTool,
    Command,
    Lookup,
    Slot,
    TaskParams,
    TaskResult,
    ToolContext,
    ToolError,
    Wording,
    fake_id,
    task,
)
from blueprint_engine.integrations.credentials import CredentialData

API = "https://api.razorpay.com/v1"


class RazorpayCredential(CredentialData):
    """A Razorpay account's API key pair and, to receive its webhooks at
    ``/webhooks/razorpay/{credential_id}``, the webhook secret set in its dashboard (type
    ``razorpay``). Source: https://razorpay.com/docs/api/authentication/ (key ids start with
    ``rzp_test_`` or ``rzp_live_``)."""

    kind = "razorpay"
    label = "Razorpay"
    identity = ("key_id",)

    key_id: str = Field(title="Key ID", pattern=r"^rzp_(test|live)_[A-Za-z0-9]{6,40}$")
    key_secret: SecretStr = Field(title="Key secret", min_length=8, max_length=200)
    webhook_secret: SecretStr | None = Field(
        default=None, title="Webhook secret", min_length=8, max_length=200
    )


class Customer(BaseModel):
    """A Razorpay customer block."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    email: EmailStr | None = None
    contact: str | None = Field(default=None, description="Phone, E.164 preferred.")


class CreatePaymentLink(TaskParams):
    """Params of ``razorpay.create_payment_link``."""

    amount: int = Field(gt=0, description="Amount in paise (₹500 = 50000).")
    currency: str = Field(default="INR", min_length=3, max_length=3)
    description: str | None = Field(default=None, max_length=2048)
    customer: Customer | None = None
    reference_id: str | None = Field(default=None, max_length=40)
    expire_by: int | None = Field(default=None, description="Unix timestamp (seconds).")
    notify_sms: bool = False
    notify_email: bool = False
    callback_url: str | None = None
    notes: dict[str, str] | None = None


class LineItem(BaseModel):
    """One invoice line."""

    model_config = ConfigDict(extra="forbid")
    name: str
    amount: int = Field(gt=0, description="Unit amount in paise.")
    quantity: int = Field(default=1, gt=0)


class CreateInvoice(TaskParams):
    """Params of ``razorpay.create_invoice``."""

    customer: Customer
    line_items: list[LineItem] = Field(min_length=1)
    currency: str = Field(default="INR", min_length=3, max_length=3)
    description: str | None = None
    expire_by: int | None = Field(default=None, description="Unix timestamp (seconds).")
    sms_notify: bool = False
    email_notify: bool = False


class FetchPayment(TaskParams):
    """Params of ``razorpay.fetch_payment``."""

    payment_id: str = Field(pattern=r"^pay_\w+$")


class RefundPayment(TaskParams):
    """Params of ``razorpay.refund_payment``."""

    payment_id: str = Field(pattern=r"^pay_\w+$")
    amount: int | None = Field(default=None, gt=0, description="Paise; omit for a full refund.")
    speed: Literal["normal", "optimum"] = "normal"
    notes: dict[str, str] | None = None


def _customer(slots: dict[str, Any]) -> dict[str, Any]:
    customer = {
        "name": slots.get("customer_name"),
        "contact": slots.get("customer_phone"),
        "email": slots.get("customer_email"),
    }
    return {k: v for k, v in customer.items() if v}


def _invoice_params(slots: dict[str, Any]) -> dict[str, Any]:
    amount = slots["amount"]
    return {
        "customer": _customer(slots),
        "line_items": [
            {
                "name": slots.get("description") or "Invoice",
                "amount": amount["amount_minor"],
                "quantity": 1,
            }
        ],
        "currency": amount["currency"],
        "description": slots.get("description"),
        "sms_notify": bool(slots.get("customer_phone")),
        "email_notify": bool(slots.get("customer_email")),
    }


def _link_params(slots: dict[str, Any]) -> dict[str, Any]:
    amount = slots["amount"]
    params: dict[str, Any] = {
        "amount": amount["amount_minor"],
        "currency": amount["currency"],
        "description": slots.get("description"),
    }
    customer = _customer(slots)
    if customer:
        params["customer"] = customer
    if slots.get("customer_phone"):
        params["notify_sms"] = True  # Razorpay texts the link: the confirmation says so
    if slots.get("customer_email"):
        params["notify_email"] = True
    return {k: v for k, v in params.items() if v is not None}


def _refund_params(slots: dict[str, Any]) -> dict[str, Any]:
    params: dict[str, Any] = {"payment_id": slots["payment_id"]}
    if slots.get("amount"):
        params["amount"] = slots["amount"]["amount_minor"]
    return params


def _payment_facts(payment: dict[str, Any]) -> dict[str, Any]:
    """What a fetched payment tells a refund's confirmation: how much was paid, refunded
    before and is left, and who paid (their phone or email)."""
    facts: dict[str, Any] = {}
    amount, currency = payment.get("amount"), payment.get("currency")
    if isinstance(amount, int) and amount > 0 and isinstance(currency, str):
        facts["paid"] = {"amount_minor": amount, "currency": currency}
        refunded = payment.get("amount_refunded")
        if isinstance(refunded, int) and 0 < refunded < amount:
            facts["refunded"] = {"amount_minor": refunded, "currency": currency}
            facts["remaining"] = {"amount_minor": amount - refunded, "currency": currency}
    payer = payment.get("contact") or payment.get("email")
    if isinstance(payer, str) and payer.strip():
        facts["payer"] = payer.strip()
    return facts


_CUSTOMER_SLOTS = (
    Slot(
        "customer_phone",
        "phone",
        False,
        N_("What is the customer's phone number?"),
        param="customer.contact",
    ),
    Slot(
        "customer_email",
        "email",
        False,
        N_("What is the customer's email?"),
        param="customer.email",
    ),
)


def _refund_key(idempotency_key: str) -> str:
    return idempotency_key.replace(":", "_")


def _reference_id(idempotency_key: str) -> str:
    return "wf_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]


_LINK_COMMAND = Command(
    intent="CREATE_PAYMENT_LINK",
    description="Create a payment link for an amount, optionally for a customer.",
    slots=(
        Slot(
            "amount",
            "money",
            True,
            N_("How much should the payment link be for?"),
            param="amount",
        ),
        Slot(
            "customer_name",
            "text",
            False,
            N_("Who is it for?"),
            param="customer.name",
        ),
        Slot("description", "text", False, N_("What is it for?"), param="description"),
        *_CUSTOMER_SLOTS,
    ),
    build_params=_link_params,
    help=N_("Create a payment link"),
    request=Wording(
        (
            N_("the {amount} payment link for {customer_name}"),
            N_("the payment link for {amount}"),
            N_("the payment link"),
        )
    ),
    confirmation=Wording(
        (
            N_(
                "Create a {amount} payment link for {customer_name} and text it "
                "to {customer_phone}?"
            ),
            N_("Create a payment link for {amount} and text it to {customer_phone}?"),
            N_("Create a {amount} payment link for {customer_name}?"),
            N_("Create a payment link for {amount}?"),
        ),
        extras=(
            N_("It's for “{description}”."),
            N_("Razorpay will email it to {customer_email}."),
        ),
    ),
    result=Wording(
        (
            N_("Done — {customer_name}'s payment link for {amount} is ready.\n{link}"),
            N_("Done — the payment link for {amount} is ready.\n{link}"),
        ),
        extras=(
            N_("Razorpay has texted it to {customer_phone}."),
            N_("Razorpay has emailed it to {customer_email}."),
        ),
    ),
    failure=Wording((N_("Sorry, I couldn't create the payment link for {amount}: {reason}."),)),
    outputs={"link": "short_url"},
)

_INVOICE_COMMAND = Command(
    intent="CREATE_INVOICE",
    description="Create and issue an invoice to a customer for an amount.",
    slots=(
        Slot(
            "customer_name",
            "text",
            True,
            N_("Who should the invoice be for?"),
            param="customer.name",
        ),
        Slot(
            "amount",
            "money",
            True,
            N_("How much should the invoice be for?"),
            param="line_items",
        ),
        Slot(
            "description",
            "text",
            False,
            N_("What is the invoice for?"),
            param="description",
        ),
        *_CUSTOMER_SLOTS,
    ),
    build_params=_invoice_params,
    help=N_("Create and send an invoice"),
    request=Wording(
        (
            N_("the invoice for {customer_name} for {amount}"),
            N_("the invoice for {customer_name}"),
            N_("the invoice"),
        )
    ),
    confirmation=Wording(
        (
            N_("Invoice {customer_name} for {amount} and text it to {customer_phone}?"),
            N_("Invoice {customer_name} for {amount}?"),
        ),
        extras=(
            N_("It's for “{description}”."),
            N_("Razorpay will email it to {customer_email}."),
        ),
    ),
    result=Wording(
        (N_("Done — {customer_name} has been invoiced {amount}.\n{invoice}: {link}"),),
        extras=(
            N_("Razorpay has texted it to {customer_phone}."),
            N_("Razorpay has emailed it to {customer_email}."),
        ),
    ),
    failure=Wording((N_("Sorry, I couldn't create the invoice for {customer_name}: {reason}."),)),
    outputs={"invoice": "id", "link": "short_url"},
)

_REFUND_COMMAND = Command(
    intent="REFUND_PAYMENT",
    description="Refund a payment by its id, fully or a given amount.",
    slots=(
        Slot(
            "payment_id",
            "text",
            True,
            N_("Which payment should I refund (pay_…)?"),
            param="payment_id",
            hint=N_("That doesn't look like a Razorpay payment id — they start with pay_"),
        ),
        Slot("amount", "money", False, N_("How much should I refund?"), param="amount"),
    ),
    build_params=_refund_params,
    help=N_("Refund a payment"),
    request=Wording(
        (
            N_("the refund of {amount} of payment {payment_id}"),
            N_("the full refund of payment {payment_id}"),
            N_("the refund"),
        )
    ),
    confirmation=Wording(
        (
            N_("Refund {amount} of the {paid} payment {payment_id}?"),
            N_("Refund {amount} of payment {payment_id}?"),
            N_(
                "Refund the remaining {remaining} of payment {payment_id}? "
                "{refunded} of its {paid} was refunded before."
            ),
            N_("Refund the full {paid} of payment {payment_id}?"),
            N_("Refund payment {payment_id} in full?"),
        ),
        extras=(
            N_("{refunded} of it was refunded before."),
            N_("The money goes back to {payer}."),
        ),
    ),
    result=Wording(
        (
            N_(
                "Done — I've refunded {amount} of payment {payment_id}; it usually "
                "reaches the customer in 5 to 7 working days.\nRefund id: {refund}"
            ),
            N_(
                "Done — I've refunded the remaining {remaining} of payment "
                "{payment_id}; it usually reaches the customer in 5 to 7 working "
                "days.\nRefund id: {refund}"
            ),
            N_(
                "Done — I've refunded the full {paid} of payment {payment_id}; it "
                "usually reaches the customer in 5 to 7 working days.\n"
                "Refund id: {refund}"
            ),
            N_(
                "Done — I've refunded payment {payment_id} in full; it usually "
                "reaches the customer in 5 to 7 working days.\nRefund id: {refund}"
            ),
        )
    ),
    failure=Wording(
        (
            N_("Sorry, I couldn't refund {amount} of payment {payment_id}: {reason}."),
            N_("Sorry, I couldn't refund the full {paid} of payment {payment_id}: {reason}."),
            N_("Sorry, I couldn't refund payment {payment_id}: {reason}."),
        )
    ),
    outputs={"refund": "id"},
    lookup=Lookup(
        task="fetch_payment",
        build_params=lambda slots: {"payment_id": slots["payment_id"]},
        facts=_payment_facts,
        slot="payment_id",
        refused=N_("I couldn't find that payment on Razorpay"),
    ),
)


class RazorpaySettings(ToolSettings):
    """``RAZORPAY_*``: the deployment's Razorpay account (used when a node names no
    ``razorpay`` credential) and the secret its webhooks are signed with."""

    model_config = SettingsConfigDict(env_prefix="RAZORPAY_")

    key_id: str | None = None
    key_secret: SecretStr | None = None
    webhook_secret: SecretStr | None = Field(
        default=None,
        description="Checks X-Razorpay-Signature of POST /webhooks/razorpay (400 on mismatch).",
    )

    def ready(self) -> bool:
        """Key id and key secret are both set."""
        return bool(self.key_id and self.key_secret)


class RazorpayEntity(TaskResult):
    """A Razorpay object as Razorpay answered it: every field it sends is kept (later steps may
    read any); the declared ones are those steps usually need."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(description="Razorpay's id of the object.")


class PaymentLink(RazorpayEntity):
    """Result of ``razorpay.create_payment_link``."""

    id: str = Field(description="plink_…")
    short_url: str | None = Field(default=None, description="The link to share.")
    status: str | None = None
    amount: int | None = Field(default=None, description="Paise.")
    reference_id: str | None = None


class Invoice(RazorpayEntity):
    """Result of ``razorpay.create_invoice``."""

    id: str = Field(description="inv_…")
    short_url: str | None = Field(default=None, description="The invoice's link.")
    status: str | None = None
    amount: int | None = Field(default=None, description="Paise.")


class Payment(RazorpayEntity):
    """Result of ``razorpay.fetch_payment`` (null fields in sandbox mode)."""

    id: str = Field(description="pay_…")
    amount: int | None = Field(default=None, description="Paise.")
    currency: str | None = None
    status: str | None = None
    email: str | None = None
    contact: str | None = None


class Refund(RazorpayEntity):
    """Result of ``razorpay.refund_payment``."""

    id: str = Field(description="rfnd_…")
    payment_id: str | None = None
    amount: int | None = Field(default=None, description="Paise; null for a full refund.")
    status: str | None = None


def _link_body(params: CreatePaymentLink, key: str) -> dict[str, Any]:
    body = params.model_dump(exclude_none=True, exclude={"notify_sms", "notify_email"})
    body["notify"] = {"sms": params.notify_sms, "email": params.notify_email}
    body.setdefault("reference_id", _reference_id(key))
    return body


def _invoice_body(params: CreateInvoice) -> dict[str, Any]:
    body = params.model_dump(exclude_none=True)
    body["type"] = "invoice"
    body["sms_notify"] = int(params.sms_notify)
    body["email_notify"] = int(params.email_notify)
    return body


def _refund_body(params: RefundPayment) -> dict[str, Any]:
    return params.model_dump(exclude_none=True, exclude={"payment_id"})


def _request(
    method: str, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """The REST call the SDK makes, as sandbox mode shows it."""
    request: dict[str, Any] = {"method": method, "url": API + path}
    if body:
        request["body"] = body
    if headers:
        request["headers"] = headers
    return request


class RazorpayTool(BaseTool):
    """Payment links, invoices, payments, refunds (the node's ``razorpay`` credential, else
    ``RAZORPAY_KEY_ID``/``RAZORPAY_KEY_SECRET``)."""

    service = "razorpay"
    description = "Collect and refund payments in India with Razorpay (amounts in paise)."
    credential_types = (RazorpayCredential,)
    settings_type = RazorpaySettings

    def _auth(self, context: ToolContext) -> tuple[str, str]:
        """``(key_id, key_secret)``: the node's credential, else the deployment's settings."""
        credential = context.credential
        if credential is not None and isinstance(credential.data, RazorpayCredential):
            return credential.data.key_id, credential.data.key_secret.get_secret_value()
        razorpay_settings = context.settings.tool(RazorpaySettings)
        key_id, secret = razorpay_settings.key_id, razorpay_settings.key_secret
        assert key_id is not None and secret is not None  # else the call was sandboxed
        return key_id, secret.get_secret_value()

    async def _call(
        self, context: ToolContext, call: Callable[[razorpay.Client], dict[str, Any]]
    ) -> dict[str, Any]:
        """Call Razorpay through its SDK (blocking, so in a worker thread).

        Raises:
            ToolError: ``razorpay_bad_request`` (not retryable), ``razorpay_server_error`` and
                ``network_error`` (retryable).
        """
        client = razorpay.Client(auth=self._auth(context))
        try:
            return await asyncio.to_thread(call, client)
        except BadRequestError as exc:
            raise ToolError(
                f"Razorpay rejected the request: {exc}",
                code="razorpay_bad_request",
                retryable=False,
            ) from None
        except (GatewayError, ServerError) as exc:
            raise ToolError(
                f"Razorpay error: {exc}", code="razorpay_server_error", retryable=True
            ) from None
        except requests.RequestException as exc:
            raise ToolError(
                f"Razorpay unreachable: {exc}", code="network_error", retryable=True
            ) from None

    @task(
        params=CreatePaymentLink,
        result=PaymentLink,
        description="Create a shareable payment link for an amount.",
        command=_LINK_COMMAND,
    )
    async def create_payment_link(
        self, params: CreatePaymentLink, context: ToolContext
    ) -> PaymentLink:
        """Create the link (``reference_id`` derived from the step's key unless given)."""
        body = _link_body(params, context.idempotency_key)
        answer = await self._call(context, lambda client: client.payment_link.create(body))
        return PaymentLink.model_validate(answer)

    @create_payment_link.request
    def create_payment_link_request(
        self, params: CreatePaymentLink, context: ToolContext
    ) -> dict[str, Any]:
        """``POST /payment_links``."""
        return _request("POST", "/payment_links", _link_body(params, context.idempotency_key))

    @create_payment_link.sandbox
    def create_payment_link_sandbox(
        self, params: CreatePaymentLink, context: ToolContext
    ) -> PaymentLink:
        """A fake link id and URL."""
        link_id = fake_id("plink", context.idempotency_key)
        return PaymentLink(
            id=link_id,
            short_url=f"https://rzp.io/sandbox/{link_id}",
            status="created",
            amount=params.amount,
            reference_id=params.reference_id or _reference_id(context.idempotency_key),
        )

    @task(
        params=CreateInvoice,
        result=Invoice,
        description="Create and issue an invoice to a customer.",
        command=_INVOICE_COMMAND,
    )
    async def create_invoice(self, params: CreateInvoice, context: ToolContext) -> Invoice:
        """Create and issue the invoice (Razorpay takes no idempotency key for it)."""
        body = _invoice_body(params)
        answer = await self._call(context, lambda client: client.invoice.create(body))
        return Invoice.model_validate(answer)

    @create_invoice.request
    def create_invoice_request(self, params: CreateInvoice, context: ToolContext) -> dict[str, Any]:
        """``POST /invoices``."""
        return _request("POST", "/invoices", _invoice_body(params))

    @create_invoice.sandbox
    def create_invoice_sandbox(self, params: CreateInvoice, context: ToolContext) -> Invoice:
        """A fake invoice id and URL, for the sum of the lines."""
        invoice_id = fake_id("inv", context.idempotency_key)
        return Invoice(
            id=invoice_id,
            short_url=f"https://rzp.io/sandbox/{invoice_id}",
            status="issued",
            amount=sum(item.amount * item.quantity for item in params.line_items),
        )

    @task(params=FetchPayment, result=Payment, description="Fetch a payment by id.")
    async def fetch_payment(self, params: FetchPayment, context: ToolContext) -> Payment:
        """Read the payment."""
        answer = await self._call(context, lambda client: client.payment.fetch(params.payment_id))
        return Payment.model_validate(answer)

    @fetch_payment.request
    def fetch_payment_request(self, params: FetchPayment, context: ToolContext) -> dict[str, Any]:
        """``GET /payments/{id}``."""
        return _request("GET", f"/payments/{params.payment_id}", {})

    @fetch_payment.sandbox
    def fetch_payment_sandbox(self, params: FetchPayment, context: ToolContext) -> Payment:
        """Only the id: a sandbox knows nothing of the payment."""
        return Payment(id=params.payment_id)

    @task(
        params=RefundPayment,
        result=Refund,
        description="Refund a captured payment, fully or partly.",
        command=_REFUND_COMMAND,
    )
    async def refund_payment(self, params: RefundPayment, context: ToolContext) -> Refund:
        """Refund with ``X-Refund-Idempotency`` from the step's key."""
        body = _refund_body(params)
        headers = {"X-Refund-Idempotency": _refund_key(context.idempotency_key)}
        answer = await self._call(
            context, lambda client: client.payment.refund(params.payment_id, body, headers=headers)
        )
        return Refund.model_validate(answer)

    @refund_payment.request
    def refund_payment_request(self, params: RefundPayment, context: ToolContext) -> dict[str, Any]:
        """``POST /payments/{id}/refund`` with its idempotency header."""
        return _request(
            "POST",
            f"/payments/{params.payment_id}/refund",
            _refund_body(params),
            {"X-Refund-Idempotency": _refund_key(context.idempotency_key)},
        )

    @refund_payment.sandbox
    def refund_payment_sandbox(self, params: RefundPayment, context: ToolContext) -> Refund:
        """A fake refund id."""
        return Refund(
            id=fake_id("rfnd", context.idempotency_key),
            payment_id=params.payment_id,
            amount=params.amount,
            status="processed",
        )
