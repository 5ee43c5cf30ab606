from text import is_palindrome

assert is_palindrome("level")
assert not is_palindrome("hello")
assert is_palindrome("Racecar"), "case must be ignored"
assert is_palindrome("A man, a plan, a canal: Panama"), "spaces and punctuation must be ignored"
print("test_text: all passed")
