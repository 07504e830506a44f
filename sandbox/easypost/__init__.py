"""EasyPost's API as the sandbox serves it (under `/v2`): shipments with rates, buying a rate
(a label and a tracker), refunding a label, return shipments, and trackers that move on their own
and report each move with a signed `tracker.updated` event."""
