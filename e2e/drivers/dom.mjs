// Runs inside the page (serialized with toString, so it must not use
// anything from this module's scope): finds the first visible element that
// matches `query`, the way a person or a screen reader names it.
//
// query: {css} | {role, name} | {label} | {text}; `name`, `label` and
// `text` are {text} (exact for name and label, a substring for text) or
// {regex, flags}.
export function findInPage(query) {
  const norm = (s) => (s ?? "").replace(/\s+/g, " ").trim();
  const test = (value, want) =>
    want.regex !== undefined ? new RegExp(want.regex, want.flags).test(value) : value === want.text;
  const visible = (el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== "hidden";
  const ROLES = {
    alertdialog: '[role="alertdialog"]',
    button: 'button, [role="button"], input[type="button"], input[type="submit"]',
    dialog: 'dialog, [role="dialog"]',
    heading: 'h1, h2, h3, h4, h5, h6, [role="heading"]',
    link: 'a[href], [role="link"]',
    slider: '[role="slider"], input[type="range"]',
  };
  const accessibleName = (el) => {
    const by = el.getAttribute("aria-labelledby");
    if (by) return norm(by.split(/\s+/).map((id) => document.getElementById(id)?.textContent ?? "").join(" "));
    const label = el.getAttribute("aria-label");
    if (label) return norm(label);
    if (el.labels && el.labels.length > 0) return norm([...el.labels].map((l) => l.textContent).join(" "));
    if (el instanceof HTMLInputElement) return norm(el.value);
    return norm(el.textContent);
  };
  const scope = query.within ? document.querySelector(query.within) : document;
  if (!scope) return null;
  let found;
  if (query.css) {
    found = [...scope.querySelectorAll(query.css)];
  } else if (query.role) {
    const selector = ROLES[query.role];
    if (!selector) throw new Error(`findInPage: unknown role ${query.role}`);
    found = [...scope.querySelectorAll(selector)].filter((el) => test(accessibleName(el), query.name));
  } else if (query.label) {
    found = [...scope.querySelectorAll("input, select, textarea")].filter((el) => test(accessibleName(el), query.label));
  } else if (query.text) {
    const want = query.text;
    const has = (el) => {
      const t = norm(el.textContent);
      return want.regex !== undefined ? new RegExp(want.regex, want.flags).test(t) : t.includes(want.text);
    };
    // The innermost elements whose text matches.
    found = [...scope.querySelectorAll("body *")].filter((el) => has(el) && ![...el.children].some(has));
  } else {
    throw new Error(`findInPage: empty query ${JSON.stringify(query)}`);
  }
  return found.find(visible) ?? null;
}
