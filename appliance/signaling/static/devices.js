// wallmesh browser client: the camera, microphone and speaker pickers.
//
// Every <select data-device="videoinput|audioinput|audiooutput"> on the page (one set in the
// lobby, one in the call's device panel) lists what enumerateDevices reports for its kind.
// Browsers give device labels only once the page may capture, so the owner refills the lists
// after each capture and whenever the system's devices change. The speaker is chosen with
// HTMLMediaElement.setSinkId where the browser has it; elsewhere its picker stays hidden.

export const SPEAKER_SUPPORTED = typeof HTMLMediaElement !== "undefined" && "setSinkId" in HTMLMediaElement.prototype;

const UNNAMED = { videoinput: "Camera", audioinput: "Microphone", audiooutput: "Speaker" };

function pickers() {
  return [...document.querySelectorAll("select[data-device]")];
}

/** Fills every picker with the devices of its kind; `current` (kind → deviceId) is selected. */
export async function fillPickers(current) {
  let devices = [];
  try {
    devices = await navigator.mediaDevices.enumerateDevices();
  } catch (_) { /* no media devices API (insecure origin): the pickers stay hidden */ }
  for (const select of pickers()) {
    const kind = select.dataset.device;
    const list = devices.filter((d) => d.kind === kind && d.deviceId);
    select.replaceChildren(...list.map((d, i) => new Option(d.label || `${UNNAMED[kind]} ${i + 1}`, d.deviceId)));
    if (current[kind] && list.some((d) => d.deviceId === current[kind])) select.value = current[kind];
    select.closest("label").hidden = !list.length || (kind === "audiooutput" && !SPEAKER_SUPPORTED);
  }
}

/** Calls `choose(kind, deviceId)` when a person picks a device, `changed()` when devices come or go. */
export function watchPickers(choose, changed) {
  for (const select of pickers()) {
    select.addEventListener("change", () => choose(select.dataset.device, select.value));
  }
  if (navigator.mediaDevices) navigator.mediaDevices.addEventListener("devicechange", changed);
}

/** Plays `element`'s sound through the output `deviceId` (empty: the system's default). */
export async function routeAudio(element, deviceId) {
  if (!SPEAKER_SUPPORTED || element.sinkId === (deviceId || "")) return;
  try {
    await element.setSinkId(deviceId || "");
  } catch (err) {
    console.warn("wallmesh: speaker not available: %s", err.message);
  }
}
