// Light or dark. The page follows the system's prefers-color-scheme until the reader picks one
// with the toggle, which is remembered (localStorage); the charts follow through plot.js.

const KEY = "gradscope.theme";

/** The theme now shown: "light" | "dark". */
export const currentTheme = () => document.documentElement.dataset.theme || "light";

/**
 * @param {HTMLButtonElement|null} button  the toggle (absent: follow the system only)
 * @param {(theme: string) => void} onChange  redraw what draws colours itself (the charts)
 */
export function initTheme(button, onChange = () => {}) {
  const media = window.matchMedia("(prefers-color-scheme: dark)");
  const apply = () => {
    const chosen = localStorage.getItem(KEY);
    const theme = chosen === "dark" || chosen === "light" ? chosen : media.matches ? "dark" : "light";
    const changed = theme !== document.documentElement.dataset.theme;
    document.documentElement.dataset.theme = theme;
    if (button) {
      const other = theme === "dark" ? "light" : "dark";
      button.textContent = theme === "dark" ? "☀" : "☾";
      button.title = `Switch to the ${other} theme`;
      button.setAttribute("aria-label", `Switch to the ${other} theme`);
      button.setAttribute("aria-pressed", String(theme === "dark"));
    }
    if (changed) onChange(theme);
  };
  media.addEventListener("change", apply);
  if (button) {
    button.addEventListener("click", () => {
      localStorage.setItem(KEY, currentTheme() === "dark" ? "light" : "dark");
      apply();
    });
  }
  apply();
}
