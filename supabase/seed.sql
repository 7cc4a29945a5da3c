-- Seed data of a local Supabase stack (`supabase start`, `supabase db reset`; not sent by
-- `supabase db push`): the main example, examples/payment_receipt/blueprint.json, as an active
-- workflow of the local user, so a Razorpay `payment.captured` event (POST /events or the
-- webhook) runs it at once. tests/test_supabase_project.py keeps it equal to the example file
-- and runs it. Idempotent.
insert into workflows (id, owner_id, name, description, origin, latest_version, active_version)
values (
    '5eed0000-0000-4000-8000-000000000001',
    '00000000-0000-0000-0000-000000000001',
    'WhatsApp receipt for captured payments',
    'When a Razorpay payment is captured, WhatsApp the customer a receipt.',
    'api', 1, 1
)
on conflict (id) do nothing;

insert into workflow_versions (workflow_id, owner_id, version, blueprint, trigger_kind, trigger_event)
values (
    '5eed0000-0000-4000-8000-000000000001',
    '00000000-0000-0000-0000-000000000001',
    1,
    $seed${
  "schema_version": 1,
  "name": "WhatsApp receipt for captured payments",
  "description": "When a Razorpay payment is captured, WhatsApp the customer a receipt.",
  "nodes": [
    {
      "id": "payment_captured",
      "type": "trigger",
      "trigger": "event",
      "event": "razorpay/payment.captured",
      "name": "Razorpay: payment captured",
      "position": {
        "x": 0,
        "y": 0
      }
    },
    {
      "id": "receipt",
      "type": "action",
      "service": "transform",
      "task": "build",
      "name": "Compose receipt",
      "position": {
        "x": 0,
        "y": 120
      },
      "params": {
        "fields": {
          "phone": "{{ trigger_data.payload.payment.entity.contact }}",
          "rupees": "{{ '%.2f' | format(trigger_data.payload.payment.entity.amount / 100) }}",
          "text": "Thank you! We received ₹{{ '%.2f' | format(trigger_data.payload.payment.entity.amount / 100) }} for {{ trigger_data.payload.payment.entity.description }}. Payment id: {{ trigger_data.payload.payment.entity.id }}."
        }
      }
    },
    {
      "id": "send_receipt",
      "type": "action",
      "service": "whatsapp",
      "task": "send_message",
      "name": "WhatsApp the receipt",
      "position": {
        "x": 0,
        "y": 240
      },
      "retry": {
        "max_attempts": 5,
        "initial_backoff_seconds": 2
      },
      "params": {
        "to": "{{ steps.receipt.output.phone }}",
        "body": "{{ steps.receipt.output.text }}"
      }
    },
    {
      "id": "done",
      "type": "end",
      "name": "Done",
      "position": {
        "x": 0,
        "y": 360
      },
      "output": {
        "payment_id": "{{ trigger_data.payload.payment.entity.id }}",
        "amount_rupees": "{{ steps.receipt.output.rupees }}",
        "message_sid": "{{ steps.send_receipt.output.sid }}"
      }
    }
  ],
  "edges": [
    {
      "source": "payment_captured",
      "target": "receipt"
    },
    {
      "source": "receipt",
      "target": "send_receipt"
    },
    {
      "source": "send_receipt",
      "target": "done"
    }
  ]
}$seed$::jsonb,
    'event',
    'razorpay/payment.captured'
)
on conflict (workflow_id, version) do nothing;
