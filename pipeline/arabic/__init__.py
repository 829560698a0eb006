"""Arabic text: normalisation and the lexicon (clitics, stems, stop words) every matcher shares."""
