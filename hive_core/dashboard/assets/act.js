// The confirm page of a one-tap action link: only this button's POST acts (GET never does).

const button = document.getElementById("confirm");
const result = document.getElementById("result");

if (button && result) {
  button.addEventListener("click", async () => {
    button.disabled = true;
    result.textContent = "…";
    let answer = {};
    let status = 0;
    try {
      const response = await fetch(`/api/act/${encodeURIComponent(button.dataset.token || "")}`, {
        method: "POST",
        headers: { "x-hive-request": "1", "Content-Type": "application/json" },
        body: "{}",
      });
      status = response.status;
      answer = await response.json().catch(() => ({}));
    } catch (err) {
      answer = { error: String(err) };
    }
    result.textContent = answer.ok ? `done: ${answer.detail || "ok"}` : `refused: ${answer.error || `HTTP ${status}`}`;
    result.className = answer.ok ? "ok" : "bad";
  });
}
