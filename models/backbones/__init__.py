"""Image backbones behind one interface (see ``models.backbones.base``)."""
