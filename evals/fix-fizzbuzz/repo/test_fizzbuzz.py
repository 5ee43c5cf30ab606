from fizzbuzz import fizzbuzz

assert fizzbuzz(3) == "Fizz"
assert fizzbuzz(10) == "Buzz"
assert fizzbuzz(7) == "7"
assert fizzbuzz(15) == "FizzBuzz", fizzbuzz(15)
assert fizzbuzz(45) == "FizzBuzz", fizzbuzz(45)
print("test_fizzbuzz: all passed")
