// Feedback while a question is with the assistant (a language model may take a while).
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!form.classList.contains("ask")) return;
  const button = form.querySelector("button[type=submit]");
  if (button) {
    button.disabled = true;
    button.textContent = "Thinking\u2026";
  }
});
