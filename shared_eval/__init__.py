"""Caption metrics and IoU scoring shared by the vlrepro subprojects."""
