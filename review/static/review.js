// The review page's behaviour: keyboard shortcuts, hovering a code or a span lights both,
// selecting words of the note to add a code, and the code picker (replace / add). Requests go
// through htmx to the app itself; nothing here reads or sends anything elsewhere.
(function () {
  "use strict";
  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));
  const codePoints = (text) => Array.from(text).length;

  let focusedKey = null; // the card the shortcuts act on
  let advance = false; // after a decision, move on to the next code still to decide
  let panel = null; // the #codes element last seen, to notice when it was swapped
  let selection = null; // {start, end, words} of the words selected in the note

  // --- cards and focus -------------------------------------------------------------------
  const cards = () => $$("#codes .card");
  const cardOf = (key) => key && $(`#codes .card[data-key="${key}"]`);
  const isPending = (card) => card.classList.contains("pending");

  function focusCard(card) {
    $$("#codes .card.focused").forEach((c) => c.classList.remove("focused"));
    focusedKey = card ? card.dataset.key : null;
    if (card) {
      card.classList.add("focused");
      card.scrollIntoView({ block: "nearest" });
    }
  }

  function currentCard() {
    return cardOf(focusedKey) || cards().find(isPending) || cards()[0] || null;
  }

  function restoreFocus() {
    const list = cards();
    let card = cardOf(focusedKey);
    if (advance) {
      const after = list.slice(list.indexOf(card) + 1);
      card = after.find(isPending) || list.find(isPending) || card;
    }
    advance = false;
    focusCard(card || list.find(isPending) || list[0] || null);
  }

  function moveFocus(step) {
    const list = cards();
    if (!list.length) return;
    const i = list.indexOf(currentCard());
    focusCard(list[Math.min(Math.max(i + step, 0), list.length - 1)]);
  }

  // --- hover: a card lights its spans, a span lights its cards ----------------------------
  function setHot(keys) {
    $$(".hot").forEach((el) => el.classList.remove("hot"));
    keys.forEach((key) => {
      $$(`#note-text [data-keys~="${key}"], #codes .card[data-key="${key}"]`).forEach((el) => el.classList.add("hot"));
    });
  }

  document.addEventListener("mouseover", (event) => {
    const target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    const span = target.closest("#note-text .ev");
    const card = target.closest("#codes .card");
    setHot(span ? span.dataset.keys.split(" ") : card ? [card.dataset.key] : []);
  });

  document.addEventListener("click", (event) => {
    const target = event.target instanceof Element ? event.target : null;
    if (!target) return;
    const card = target.closest("#codes .card");
    if (card) focusCard(card);
    const replace = target.closest("[data-replace]");
    if (replace) openReplace(replace);
    const hit = target.closest("#hits .hit");
    if (hit) choose(hit.dataset.code);
    if (target.closest("[data-add]")) openAdd();
    if (target.closest("[data-help]")) toggleHelp();
    if (target.id === "help") toggleHelp(false);
  });

  // --- selecting words of the note --------------------------------------------------------
  // Offsets count characters (code points) of the note: each segment element carries its
  // offset in data-o and holds one text node.
  function pointOffset(container, offset) {
    const root = $("#note-text");
    if (container === root) {
      const child = root.childNodes[offset];
      return child ? Number(child.dataset.o) : Number(root.dataset.length);
    }
    const element = container.nodeType === Node.TEXT_NODE ? container.parentElement : container;
    const segment = element && element.closest("[data-o]");
    if (!segment || !root.contains(segment)) return null;
    if (container.nodeType === Node.TEXT_NODE) {
      return Number(segment.dataset.o) + codePoints(container.data.slice(0, offset));
    }
    return Number(segment.dataset.o) + (offset > 0 ? codePoints(segment.textContent) : 0);
  }

  function readSelection() {
    const root = $("#note-text");
    const chosen = window.getSelection();
    if (!root || !chosen || chosen.isCollapsed || !chosen.rangeCount) return null;
    const range = chosen.getRangeAt(0);
    if (!root.contains(range.commonAncestorContainer)) return null;
    const start = pointOffset(range.startContainer, range.startOffset);
    const end = pointOffset(range.endContainer, range.endOffset);
    const words = chosen.toString();
    if (start === null || end === null || end <= start || !words.trim()) return null;
    return { start, end, words: words.trim(), rect: range.getBoundingClientRect() };
  }

  function showTip() {
    const tip = $("#selection-tip");
    if (!tip) return;
    selection = readSelection();
    tip.hidden = !selection;
    if (selection) {
      tip.style.left = `${selection.rect.left + window.scrollX}px`;
      tip.style.top = `${selection.rect.bottom + window.scrollY + 6}px`;
    }
  }

  document.addEventListener("mouseup", (event) => {
    if (event.target instanceof Element && event.target.closest("#selection-tip")) return;
    setTimeout(showTip, 0);
  });
  document.addEventListener("keyup", (event) => {
    if (event.shiftKey && event.key.startsWith("Arrow")) showTip();
  });

  // --- the code picker: replace a suggestion, or add a code for the selection -------------
  function openPicker(title, action, values, query) {
    const dialog = $("#picker");
    const input = $("#picker-query");
    dialog.dataset.action = action;
    dialog.dataset.values = JSON.stringify(values);
    $(".picker-title", dialog).textContent = title;
    $("#hits").replaceChildren();
    input.value = query || "";
    dialog.showModal();
    input.focus();
    if (input.value) htmx.trigger(input, "search");
  }

  function openReplace(button) {
    focusCard(button.closest(".card"));
    openPicker(`Replace ${button.dataset.code} with…`, button.dataset.action,
      { verdict: "replaced", seen: button.dataset.seen }, "");
  }

  function openAdd() {
    const chosen = selection || readSelection();
    if (!chosen) return;
    $("#selection-tip").hidden = true;
    const n = $("#codes").dataset.note;
    const shown = chosen.words.length > 60 ? `${chosen.words.slice(0, 57)}…` : chosen.words;
    openPicker(`Add a code for “${shown}”`, `/notes/${n}/added`, { start: chosen.start, end: chosen.end }, chosen.words);
  }

  function choose(code) {
    const dialog = $("#picker");
    if (!code || !dialog.open) return;
    const values = Object.assign(JSON.parse(dialog.dataset.values), { code });
    dialog.close();
    advance = values.verdict === "replaced";
    selection = null;
    window.getSelection().removeAllRanges();
    htmx.ajax("POST", dialog.dataset.action, { target: "#codes", swap: "outerHTML", values });
  }

  function moveHit(step) {
    const hits = $$("#hits .hit");
    if (!hits.length) return;
    const i = hits.findIndex((hit) => hit.classList.contains("active"));
    hits.forEach((hit) => hit.classList.remove("active"));
    const next = hits[Math.min(Math.max(i + step, 0), hits.length - 1)];
    next.classList.add("active");
    next.scrollIntoView({ block: "nearest" });
  }

  function pickerKeys(event) {
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      moveHit(event.key === "ArrowDown" ? 1 : -1);
    } else if (event.key === "Enter") {
      event.preventDefault();
      const hit = $("#hits .hit.active") || $("#hits .hit");
      if (hit) choose(hit.dataset.code);
    }
  }

  // --- keyboard shortcuts ----------------------------------------------------------------
  function toggleHelp(show) {
    const help = $("#help");
    help.hidden = show === undefined ? !help.hidden : !show;
  }

  function press(selector) {
    const card = currentCard();
    const button = card && $(selector, card);
    if (button && !button.disabled) button.click();
    return button;
  }

  function go(which) {
    const nav = $(".notes-nav");
    const target = nav && nav.dataset[which];
    if (target) window.location.href = target;
  }

  const SHORTCUTS = {
    j: () => moveFocus(1), ArrowDown: () => moveFocus(1),
    k: () => moveFocus(-1), ArrowUp: () => moveFocus(-1),
    a: () => { advance = Boolean(press("[data-accept]")); },
    r: () => {
      const card = currentCard();
      const input = card && $(".reason-input", card);
      if (input) { focusCard(card); input.focus(); }
    },
    e: () => press("[data-replace]"),
    u: () => press("[data-undo]"),
    t: () => { const card = currentCard(); const details = card && $("[data-trace]", card); if (details) details.open = !details.open; },
    g: () => { const gold = $("#gold"); if (gold) gold.open = !gold.open; },
    c: () => openAdd(),
    d: () => { const done = $("#codes [data-done]"); if (done && !done.disabled) done.click(); },
    n: () => go("next"),
    p: () => go("previous"),
    "?": () => toggleHelp(),
  };

  document.addEventListener("keydown", (event) => {
    const picker = $("#picker");
    if (picker && picker.open) { pickerKeys(event); return; }
    if (event.key === "Escape") {
      toggleHelp(false);
      if (document.activeElement) document.activeElement.blur();
      const tip = $("#selection-tip");
      if (tip) tip.hidden = true;
      return;
    }
    const typing = event.target instanceof Element && event.target.closest("input, textarea, select");
    if (typing) {
      if (event.key === "Enter" && event.target.classList.contains("reason-input")) advance = true;
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || !$("#codes") && event.key !== "?") return;
    const action = SHORTCUTS[event.key];
    if (action) { event.preventDefault(); action(); }
  });

  // --- after htmx swaps; another tab's decisions when this tab comes back ----------------
  document.addEventListener("htmx:beforeRequest", (event) => {
    const form = event.detail.elt;
    const verdict = form instanceof HTMLFormElement && form.elements.verdict;
    if (verdict && (verdict.value === "accepted" || verdict.value === "rejected")) advance = true;
  });
  document.addEventListener("htmx:beforeSwap", (event) => {
    if (event.detail.xhr.status !== 200) advance = false;
  });
  document.addEventListener("htmx:afterSettle", () => {
    const current = $("#codes");
    if (current && current !== panel) { panel = current; restoreFocus(); }
    const hits = $$("#hits .hit");
    if (hits.length && !$("#hits .hit.active")) hits[0].classList.add("active");
  });
  document.addEventListener("visibilitychange", () => {
    const current = $("#codes");
    if (!document.hidden && current) htmx.trigger(current, "refresh");
  });
  document.addEventListener("DOMContentLoaded", () => {
    panel = $("#codes");
    if (panel) restoreFocus();
  });
})();
