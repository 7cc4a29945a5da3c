// JSON shown with its {{ template }} references highlighted.
import type { ReactNode } from "react";

const TEMPLATE = /(\{\{.*?\}\}|\{%.*?%\})/g;

/** Text with each `{{ … }}` / `{% … %}` wrapped in a highlighted <mark>. */
export function Templated({ text }: { text: string }) {
  const parts: ReactNode[] = text.split(TEMPLATE).map((part, i) =>
    i % 2 === 1 ? (
      <mark key={i} className="tpl" data-testid="template-ref">
        {part}
      </mark>
    ) : (
      part
    ),
  );
  return <>{parts}</>;
}

export function Json({ value, label }: { value: unknown; label?: string }) {
  if (value === undefined) return null;
  return (
    <pre className="json" aria-label={label} tabIndex={0}>
      <Templated text={JSON.stringify(value, null, 2)} />
    </pre>
  );
}
