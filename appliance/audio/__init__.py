"""Room audio: echo cancellation, noise suppression and gain on the microphone.

:mod:`processing` is the port (a :class:`~appliance.audio.processing.Processor` and
:func:`~appliance.audio.processing.load_processor`), :mod:`webrtc_apm` and
:mod:`livekit_apm` are its two bindings to WebRTC's audio processing module,
:mod:`chain` aligns the speaker reference and runs a processor over 10 ms frames,
:mod:`room` and :mod:`speech` simulate what a unit's microphone hears.
"""
