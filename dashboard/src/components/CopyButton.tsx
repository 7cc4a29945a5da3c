// A button that copies a text to the clipboard, or selects it on the page where the clipboard
// is closed (an insecure origin, a denied permission), saying which in a live status.
import { useState, type RefObject } from "react";

export function CopyButton({ text, target, label, children = "Copy", className = "link", disabled = false }: {
  text: string;
  /** The element showing ``text``: selected when the clipboard cannot be written. */
  target: RefObject<HTMLElement | null>;
  /** The button's accessible name ("Copy the webhook URL of shop"). */
  label: string;
  children?: string;
  className?: string;
  disabled?: boolean;
}) {
  const [state, setState] = useState("");
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      setState("Copied");
    } catch {
      const range = document.createRange();
      if (target.current) range.selectNodeContents(target.current);
      window.getSelection()?.removeAllRanges();
      window.getSelection()?.addRange(range);
      setState("Selected: press Ctrl+C to copy");
    }
  };
  return (
    <>
      <button type="button" className={className} aria-label={label} disabled={disabled} onClick={() => void copy()}>
        {children}
      </button>{" "}
      <span className="muted small" role="status">{state}</span>
    </>
  );
}
