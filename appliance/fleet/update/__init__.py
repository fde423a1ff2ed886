"""Updates with rollback: versioned slots under the state partition, a trial, a health deadline.

:mod:`.slots` keeps the slots and the record of which runs (``versions/slots.json``),
:mod:`.launch` picks the version at each start and judges a trial's health, :mod:`.fetch`
gets a signed release from the site server. ``docs/updates.md`` explains the design.
"""
