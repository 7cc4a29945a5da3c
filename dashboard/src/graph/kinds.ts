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

/** Action nodes' services (GET /tools) as the canvas shows them: icon and label, in this one
 * place. tests/test_dashboard_mirrors.py fails when the engine offers a service missing here;
 * an unknown one is still drawn, with the action's icon and the service's own name. */
export const SERVICES = {
  whatsapp: { icon: "✆", label: "WhatsApp" },
  razorpay: { icon: "₹", label: "Razorpay" },
  http: { icon: "⇄", label: "HTTP" },
  transform: { icon: "⚙", label: "Transform" },
  llm: { icon: "✎", label: "Language model" },
  email: { icon: "✉", label: "Email" },
  slack: { icon: "#", label: "Slack" },
  instagram: { icon: "◎", label: "Instagram" },
} as const satisfies Record<string, { icon: string; label: string }>;

function knownService(service: string): service is keyof typeof SERVICES {
  return Object.hasOwn(SERVICES, service);
}

/** An action's icon by its service (the action's own for an unknown one). */
export function serviceIcon(service: string | undefined): string {
  return service && knownService(service) ? SERVICES[service].icon : KINDS.action.icon;
}

/** An action's service as people call it ("Email"), or the service's name when unknown. */
export function serviceLabel(service: string | undefined): string {
  return service && knownService(service) ? SERVICES[service].label : service || KINDS.action.label;
}

/** A node's icon: an action's by its service, any other by its kind. */
export function nodeIcon(node: { type: string; service?: string }): string {
  return node.type === "action" ? serviceIcon(node.service) : kindIcon(node.type);
}
