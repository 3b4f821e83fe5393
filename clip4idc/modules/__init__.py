"""CLIP4IDC model code: CLIP towers with pair fusion, the captioning decoder, BertAdam and the CLIP BPE tokenizer."""
