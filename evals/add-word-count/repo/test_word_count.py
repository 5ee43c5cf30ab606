from wordstats import count_words

assert count_words("the cat and the hat") == {"the": 2, "cat": 1, "and": 1, "hat": 1}
assert count_words("The  THE\nthe") == {"the": 3}
assert count_words("") == {}
print("test_word_count: all passed")
