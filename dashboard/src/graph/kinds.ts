// The node kinds as the dashboard shows them: icon and label, in this one place. Which kinds
// exist, and the fields each takes, come from the engine (GET /blueprint/schema, see
// schema.ts); tests/test_dashboard_mirrors.py fails when the engine has a kind missing here.
// A kind the dashboard does not know yet is still drawn, as a plain card under its own name.

export const KINDS = {
  trigger: { icon: "⚡", label: "Trigger" },
  action: { icon: "▶", label: "Action" },
  router: { icon: "⋔", label: "Router" },
  delay: { icon: "◷", label: "Delay" },
  wait_for_event: { icon: "⚐", label: "Wait for event" },
  foreach: { icon: "⟳", label: "For each" },
  workflow: { icon: "↪", label: "Sub-workflow" },
  end: { icon: "■", label: "End" },
} as const satisfies Record<string, { icon: string; label: string }>;

export type NodeType = keyof typeof KINDS;

function known(type: string): type is NodeType {
  return Object.hasOwn(KINDS, type);
}

export function kindIcon(type: string): string {
  return known(type) ? KINDS[type].icon : "◇";
}

export function kindLabel(type: string): string {
  return known(type) ? KINDS[type].label : type;
}

export const SERVICE_ICON: Record<string, string> = {
  whatsapp: "✆",
  razorpay: "₹",
  http: "⇄",
  transform: "⚙",
  llm: "✎",
};
