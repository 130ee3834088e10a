"""Person tracking shared by ``cmpose infer`` and ``cmpose test --track``: a Hungarian tracker on box
IoU and the OKS of consecutive poses (``cmpose.track.tracker``), its pure cost and assignment
functions (``cmpose.track.cost``) and the offline filling of bridged gaps (``cmpose.track.bridge``).
See docs/inference.md, "Tracking"."""
