"""Regional cells: what crosses between the home region and the other cells, and nothing else.

- ``registrations``: the registration state (home → cells) and the cells' read model of it.
- ``sightings``: first sightings of deployments (cells → home; no personal data).
- ``keys``: the cells' public tool keys (cells → home JWKS) and the check that a cell's next
  key is published before it signs anything.

docs/architecture.md, "Regions", describes the design and why.
"""
