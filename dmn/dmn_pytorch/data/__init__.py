"""ReferIt / RefCOCO (UNC, UNC+) / RefCOCOg (GRef) loading and preprocessing."""
